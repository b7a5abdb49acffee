"""``HardwareSpec``: one validated, immutable description per chip, read once from YAML.

Sections shared by every kind (compute peaks, energy, power, efficiency derates, area) live in
``HardwareBase``; each kind adds its own section and names its memory levels.  Every section
that carries figures has a required ``source``.
"""
from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from accelsim.config import loader
from accelsim.config.types import (
    Area, Bandwidth, BitDensity, Bytes, Energy, EnergyPerByte, Fraction, Frequency, PositiveInt,
    Power, PowerOrZero, Seconds, Source, Spec, Throughput,
)
from accelsim.dtypes import DType


class MemoryLevel(Spec):
    capacity: Bytes
    bandwidth: Bandwidth
    energy: EnergyPerByte
    source: Source


class Compute(Spec):
    clock: Frequency
    matrix: dict[DType, Throughput] = Field(min_length=1)
    vector: Throughput
    source: Source


class EnergyTable(Spec):
    mac: dict[DType, Energy] = Field(min_length=1)
    vector_op: Energy
    source: Source


class PowerSpec(Spec):
    tdp: Power
    static: PowerOrZero
    source: Source

    @model_validator(mode="after")
    def _static_below_tdp(self):
        if self.static > self.tdp:
            raise ValueError("static power cannot exceed TDP")
        return self


class Efficiency(Spec):
    """Achieved fraction of peak, calibrated against published measurements (docs/validation.md)."""

    compute: Fraction = 1.0
    memory: Fraction = 1.0
    source: Source


class AreaSpec(Spec):
    die: Area
    source: Source


class HardwareBase(Spec):
    name: str = Field(min_length=1)
    description: str = ""
    compute: Compute
    energy: EnergyTable
    power: PowerSpec
    efficiency: Efficiency
    area: AreaSpec | None = None

    def matrix_peak(self, dtype: str) -> float:
        """Peak matrix FLOP/s for a datapath; narrower formats fall back to the nearest wider one
        the hardware has (an int4 matmul on a chip without int4 units runs at int8 or bf16)."""
        return self.compute.matrix[self.fallback_dtype(dtype)]

    def fallback_dtype(self, dtype: str) -> str:
        from accelsim.dtypes import bits
        if dtype in self.compute.matrix:
            return dtype
        wider = sorted((d for d in self.compute.matrix if bits(d) >= bits(dtype)), key=bits)
        if wider:
            return wider[0]
        return max(self.compute.matrix, key=bits)

    def mac_energy(self, dtype: str) -> float:
        return self.energy.mac.get(dtype, self.energy.mac.get(self.fallback_dtype(dtype),
                                                              max(self.energy.mac.values())))


class GpuMemory(Spec):
    hbm: MemoryLevel
    l2: MemoryLevel


class TileShape(Spec):
    """A CTA tile the kernel library offers: output m x n per SM, stepping k per main-loop
    iteration (operands are padded up to these granularities)."""

    m: PositiveInt
    n: PositiveInt
    k: PositiveInt


class GpuSection(Spec):
    sms: PositiveInt
    cluster: PositiveInt = 1  # CTAs per cluster sharing operand slabs by multicast (Hopper TMA)
    tiles: list[TileShape] = Field(min_length=1)
    launch_overhead: Seconds
    source: Source


class GpuSpec(HardwareBase):
    kind: Literal["gpu"]
    memory: GpuMemory
    gpu: GpuSection


class SystolicMemory(Spec):
    hbm: MemoryLevel
    buffer: MemoryLevel


class SystolicSection(Spec):
    rows: PositiveInt
    cols: PositiveInt
    arrays: PositiveInt
    dataflows: list[Literal["os", "ws", "is"]] = Field(min_length=1)
    overlap: Literal["none", "double_buffered"] = "double_buffered"
    macs_per_pe: dict[DType, PositiveInt] = Field(min_length=1)
    op_overhead: Seconds
    source: Source


class SystolicSpec(HardwareBase):
    kind: Literal["systolic"]
    memory: SystolicMemory
    systolic: SystolicSection

    @model_validator(mode="after")
    def _peak_matches_array(self):
        s = self.systolic
        for dtype, per_pe in s.macs_per_pe.items():
            derived = 2.0 * s.arrays * s.rows * s.cols * per_pe * self.compute.clock
            stated = self.compute.matrix.get(dtype)
            if stated is not None and abs(derived - stated) > 0.03 * stated:
                raise ValueError(
                    f"compute.matrix.{dtype} ({stated / 1e12:.4g} TFLOPS) disagrees with "
                    f"2 x arrays x rows x cols x macs_per_pe x clock ({derived / 1e12:.4g} TFLOPS)")
        return self


class WeightStore(Spec):
    """Weights fixed on die (mask ROM / metal-programmed or SRAM): no off-chip weight traffic."""

    technology: Literal["mask_rom", "sram"]
    density: BitDensity
    read_energy: EnergyPerByte
    source: Source


class HardwiredMemory(Spec):
    weights: WeightStore
    sram: MemoryLevel
    dram: MemoryLevel | None = None


class HardwiredSection(Spec):
    model: str = Field(min_length=1)
    weight_dtype: DType
    macs: PositiveInt
    region_rule: Literal["proportional", "uniform"] = "proportional"
    stage_latency: Seconds
    source: Source


class HardwiredSpec(HardwareBase):
    kind: Literal["hardwired"]
    memory: HardwiredMemory
    hardwired: HardwiredSection

    @model_validator(mode="after")
    def _peak_matches_macs(self):
        h = self.hardwired
        derived = 2.0 * h.macs * self.compute.clock
        stated = self.compute.matrix.get(h.weight_dtype)
        if stated is None:
            raise ValueError(f"compute.matrix must give the peak for the weight dtype '{h.weight_dtype}'")
        if abs(derived - stated) > 0.03 * stated:
            raise ValueError(f"compute.matrix.{h.weight_dtype} ({stated / 1e12:.4g} TFLOPS) disagrees "
                             f"with 2 x hardwired.macs x clock ({derived / 1e12:.4g} TFLOPS)")
        return self


HardwareSpec = GpuSpec | SystolicSpec | HardwiredSpec
