"""``HardwareSpec``: one validated, immutable description per chip, read once from YAML.

Sections shared by every kind (compute peaks, energy, power, efficiency derates, area) live in
``HardwareBase``; each kind adds its own section and names its memory levels.  Every section
that carries figures has a required ``source``.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from typing import Annotated, Any, ClassVar, Literal, cast

import numpy as np
from pydantic import Field, field_validator, model_validator

from accelsim.config.types import (
    MIN_FRACTION,
    Area,
    Bandwidth,
    BitDensity,
    Bytes,
    Energy,
    EnergyPerByte,
    Fraction,
    Frequency,
    Money,
    NonNegativeInt,
    PositiveInt,
    Power,
    PowerOrZero,
    Seconds,
    Source,
    Spec,
    Throughput,
)
from accelsim.dtypes import DType, bits, element_bits, is_float
from accelsim.transform.fusion import Policy, Unfused

ProcessNodeName = Literal["16nm", "14nm", "7nm", "6nm", "5nm", "4nm", "3nm"]  # keys of hardware.area.NODES


class MemoryLevel(Spec):
    capacity: Bytes
    bandwidth: Bandwidth
    energy: EnergyPerByte
    source: Source


class Compute(Spec):
    clock: Frequency
    matrix: dict[DType, Throughput] = Field(min_length=1)
    vector: Throughput
    # Hardware that detects zero operands and skips their MACs gains what the activation
    # density allows (``area.effective_macs``); dense hardware pays for every MAC.
    zero_skipping: bool = False
    source: Source


class EnergyTable(Spec):
    mac: dict[DType, Energy] = Field(min_length=1)
    vector_op: Energy
    source: Source


class NodePower(Spec):
    """What a node adds around its chips (host CPUs and DRAM, NICs, fans, switches, power-supply
    losses): system-level figures only (``hardware.power.node_power``)."""

    chips: PositiveInt  # accelerators per node
    host: PowerOrZero   # watts the node draws beside its chips
    source: Source


class PowerSpec(Spec):
    """``static``: the idle power a chip draws whenever it is powered (measured, or the default
    rule of ``hardware.power``); ``limit``: a configured power limit below the TDP (MaxQ-style
    runs); ``active``: watts each unit (``compute`` or a memory level) draws while busy, where
    calibrated against measured power; ``node``: what a node adds around its chips."""

    tdp: Power
    static: PowerOrZero
    limit: Power | None = None
    active: dict[str, PowerOrZero] | None = None
    node: NodePower | None = None
    source: Source

    @model_validator(mode="after")
    def _static_below_tdp(self):
        if self.static > self.tdp:
            raise ValueError("static power cannot exceed TDP")
        if self.limit is not None and (problem := self.limit_problem(self.limit)):
            raise ValueError(f"limit {problem}")
        return self

    def limit_problem(self, watts: float) -> str | None:
        """Why ``watts`` cannot be this chip's power limit, or None.  A limit at or below the
        idle power leaves nothing to run on; one above the TDP is refused as ``nvidia-smi -pl``
        refuses it (the cap is min(TDP, limit), so it would change nothing and is a typo)."""
        if self.static < watts <= self.tdp:
            return None
        return (f"must lie above the idle (static) power and at most the TDP: "
                f"({self.static:g}, {self.tdp:g}] W, got {watts:g} W")

    def limited(self, watts: float) -> PowerSpec:
        """This spec under a configured power limit of ``watts`` (a MaxQ-style run)."""
        problem = self.limit_problem(watts)
        if problem:
            raise ValueError(problem)
        return self.model_copy(update={"limit": watts})


class ExpertGemm(Spec):
    """The share of one datapath's matrix peak a chip's MoE expert kernel reaches, measured for
    its two GEMMs (``up``: the gate and up projections, by the expert slice's output width N;
    ``down``: by its reduction depth K), each at several routed rows per expert.  A grouped GEMM
    of few rows per expert and a narrow slice is not a dense GEMM: its share is the kernel
    library's own, measured per shape (docs/validation.md, "MoE kernels on MI355X")."""

    dtype: DType  # the datapath the measurements ran on (MXFP4 weights and activations: mxfp4)
    up: dict[PositiveInt, dict[PositiveInt, Fraction]] = Field(min_length=1)    # N -> rows -> share
    down: dict[PositiveInt, dict[PositiveInt, Fraction]] = Field(min_length=1)  # K -> rows -> share
    source: Source

    @field_validator("up", "down", mode="before")
    @classmethod
    def _plain_numbers(cls, table: object) -> object:
        """Refuse what lax parsing would take silently: YAML's ``true`` as a width, a row count or
        a share (1 and 1.0), a share in quotes, and one width or row count written twice as
        '512' and 512, which become one key, the second replacing the first.  Other shapes are
        left to the type check, whose messages name them."""
        if not isinstance(table, dict):
            return table
        _distinct_keys(table, "width")
        for width, points in table.items():
            if not isinstance(points, dict):
                continue
            if not points:
                raise ValueError(f"width {width}: no measured point (give rows per expert -> share)")
            _distinct_keys(points, f"rows per expert (at width {width})")
            for rows, share in points.items():
                if isinstance(share, (bool, str)):
                    # a ValueError, which pydantic reports with the key's path (a TypeError it would not)
                    raise ValueError(  # noqa: TRY004
                        f"width {width}, rows {rows}: the share must be a plain number in "
                        f"[{MIN_FRACTION:g}, 1], got {share!r}")
        return table


def _distinct_keys(table: dict[object, object], what: str) -> None:
    """Keys that are whole numbers, each once after '512' and 512 are read as the same."""
    seen: dict[float, object] = {}
    for key in table:
        if isinstance(key, bool) or key is None:
            raise ValueError(f"{what} must be a positive integer, got {key!r}")
        if not isinstance(key, (int, float, str)):
            continue
        try:
            number = float(key)
        except (ValueError, OverflowError):
            continue  # not a number, or past any float: the type check names it
        if number in seen:
            raise ValueError(f"{what} {key!r} given twice (also as {seen[number]!r})")
        seen[number] = key


class Efficiency(Spec):
    """Achieved fraction of peak, calibrated against published measurements (docs/validation.md)."""

    compute: Fraction = 1.0
    memory: Fraction = 1.0
    # Achieved fraction of the matrix peak of a datapath that reaches a different share than
    # ``compute`` (which then holds for every other datapath): a measured figure with its source,
    # never fitted.  Hopper's 16-bit GEMMs reach ~80 % of their peak while its FP8 GEMMs, which
    # the fitted ``compute`` follows, reach ~63 % (docs/validation.md).  Read by the GPU backend.
    datapath: dict[DType, Fraction] = Field(default_factory=dict)
    # Achieved fraction of its datapath's matrix peak for decode attention where the chip's
    # attention library has its own measured share (a decode kernel is not a GEMM: its tiles hold
    # the few query rows of one sequence); None: it runs at the datapath's share like a GEMM, as
    # prefill attention always does.  A measured figure with its source, never fitted.
    decode_attention: Fraction | None = None
    # MoE expert GEMMs on the chip's own measured MoE kernel, by rows per expert (None: they run
    # at the datapath's share like any GEMM).  Measured, never fitted.
    expert_gemm: ExpertGemm | None = None
    # The chip family whose shared fit set these constants (validation/points.yaml `families:`),
    # so a member with no measurements of its own is labelled by its family's (``accelsim.trust``).
    family: str | None = None
    source: Source


class AreaSpec(Spec):
    """Die area as stated, or modelled from components (``hardware.area``) when not given."""

    die: Area | None = None
    node: ProcessNodeName | None = None
    phys: NonNegativeInt = 0  # off-chip memory PHYs (HBM stacks / DRAM channels)
    wafer_cost: Money | None = None  # overrides the node's table value
    # One die per wafer that routes around defective cores with spares (Cerebras WSE): the
    # chip costs a whole wafer and yield losses are absorbed by redundancy, not by discards.
    wafer_scale: bool = False
    source: Source


class Respin(Spec):
    """What changes when a chip that holds one model's weights in silicon gets a new model
    (``accelsim.economics``); anything not given takes ``economics/data/system.yaml``'s default."""

    masks: PositiveInt | None = None         # masks holding the weights (mask-ROM metal/via layers)
    lead_time_months: Annotated[float, Field(ge=0)] | None = None
    source: Source


class Interconnect(Spec):
    """Chip-to-chip links for multi-chip runs (``accelsim.hardware.interconnect``).

    ``latency`` is the time per hop (algorithm step) of one message, ``base_latency`` the fixed
    cost of each collective call; ``topology`` decides which collective algorithms are possible
    (a switch allows every one, a ring only ring algorithms, a torus its own per-axis rings).

    ``ring``, ``tree`` and ``switch`` give ``bandwidth``: what one chip can send in one direction
    at once (all its links together), which every collective may use whatever group it spans.

    ``torus`` (TPU ICI) gives what the torus is built from instead, so a collective is charged
    only the links of the torus axes its group spans:

    * ``link_bandwidth``: one link, one direction; a chip has two links (+ and -) per axis.
    * ``axes``: torus dimensions (3 for TPU v4/v5p, 2 for v5e/v6e).
    * ``wraparound``: which axes of a slice close into rings.  ``whole_cubes``: every axis, but
      only when every axis length is a multiple of ``wrap_length`` (TPU v4: slices built of whole
      4x4x4 cubes joined by optical switches; smaller slices have none); ``full_axis``: each axis
      whose length is a multiple of ``wrap_length`` (TPU v5e: a full 16-chip pod axis);
      ``always`` / ``never``: every axis / none.
    * ``slice_shapes``: the published shape of a slice of N chips (chips -> axis lengths); a chip
      count not listed is laid out as the most cube-like shape (``interconnect.slice_shape``)."""

    bandwidth: Bandwidth | None = None
    latency: Seconds
    # Fixed cost of one collective call whatever its size (kernel launch, protocol setup and
    # synchronisation: NCCL's ``baseLat``); ``latency`` is then paid per algorithm step.
    base_latency: Seconds = "0 s"  # type: ignore[assignment]  # parsed like the YAML
    energy: EnergyPerByte
    topology: Literal["ring", "tree", "switch", "torus"]
    link_bandwidth: Bandwidth | None = None
    axes: PositiveInt | None = None
    wraparound: Literal["whole_cubes", "full_axis", "always", "never"] | None = None
    wrap_length: PositiveInt | None = None
    slice_shapes: dict[PositiveInt, list[PositiveInt]] | None = None
    # Chips one scale-up domain joins at this bandwidth (HGX boards: 8 through NVSwitch; GB200/
    # GB300 NVL72 racks: 72): a collective over more chips would leave these links (for the
    # scale-out network, which accelsim does not model) and is refused.  None: no limit stated.
    domain: PositiveInt | None = None
    # Share of ``bandwidth`` (or ``link_bandwidth``) the collective library moves payload at: the
    # link protocol's packet headers and flow control take the rest (NCCL reaches ~370 of NVLink
    # 4's 450 GB/s line rate; docs/validation.md).  1: the line rate, as stated.
    efficiency: Fraction = 1.0
    source: Source

    @model_validator(mode="after")
    def _keys_fit_topology(self):
        torus_keys = ("link_bandwidth", "axes", "wraparound", "wrap_length", "slice_shapes")
        if self.topology != "torus":
            if self.bandwidth is None:
                raise ValueError(f"topology {self.topology} needs bandwidth (what one chip sends "
                                 f"in one direction over all its links)")
            given = [k for k in torus_keys if getattr(self, k) is not None]
            if given:
                raise ValueError(f"{given[0]} is a torus key; topology {self.topology} takes "
                                 f"bandwidth only (or set topology: torus)")
            return self
        if self.bandwidth is not None:
            raise ValueError("topology torus takes link_bandwidth (one link, one direction), not "
                             "bandwidth: each collective is charged the links of the axes it spans")
        for key, what in (("link_bandwidth", "one link, one direction"),
                          ("axes", "torus dimensions, e.g. 3"),
                          ("wraparound", "whole_cubes, full_axis, always or never")):
            if getattr(self, key) is None:
                raise ValueError(f"topology torus needs {key} ({what})")
        if self.wraparound in ("whole_cubes", "full_axis") and self.wrap_length is None:
            raise ValueError(f"wraparound {self.wraparound} needs wrap_length (the axis length "
                             f"that closes a ring: the cube edge or the full pod axis)")
        if self.wraparound in ("always", "never") and self.wrap_length is not None:
            raise ValueError(f"wrap_length has no meaning with wraparound {self.wraparound}")
        for chips, shape in (self.slice_shapes or {}).items():
            if len(shape) != self.axes or math.prod(shape) != chips:
                raise ValueError(f"slice_shapes {chips}: {shape} must give {self.axes} axis "
                                 f"lengths whose product is {chips}")
        return self


class HostMemory(Spec):
    """Host memory a serving runtime may offload KV cache blocks to (``serve --kv-offload host``),
    per chip: its share of the host's DRAM and its own link to it (PCIe, NVLink-C2C).
    ``bandwidth`` is one direction; ``latency`` is paid once per transfer (a DMA's start-up)."""

    capacity: Bytes
    bandwidth: Bandwidth
    latency: Seconds
    source: Source


class HardwareBase(Spec):
    kind: str  # each kind's spec narrows this to its own name
    name: str = Field(min_length=1)
    description: str = ""
    compute: Compute
    energy: EnergyTable
    power: PowerSpec
    efficiency: Efficiency
    area: AreaSpec | None = None
    interconnect: Interconnect | None = None
    respin: Respin | None = None  # economics of a model change (weights in silicon only)
    host_memory: HostMemory | None = None  # a KV offload tier for serving (optional)
    # Whether the kind's backend reads ``efficiency.datapath``, ``.decode_attention`` and ``.expert_gemm`` (a
    # share a backend ignored would be silently wrong, so other kinds refuse them).
    reads_datapath_efficiency: ClassVar[bool] = False

    @model_validator(mode="after")
    def _datapath_efficiency_applies(self):
        given = self.efficiency.datapath
        if given and not self.reads_datapath_efficiency:
            raise ValueError(f"efficiency.datapath: not used by kind '{self.kind}' (only gpu configs read it)")
        if self.efficiency.decode_attention is not None and not self.reads_datapath_efficiency:
            raise ValueError(f"efficiency.decode_attention: not used by kind '{self.kind}' "
                             f"(only gpu configs read it)")
        expert = self.efficiency.expert_gemm
        if expert is not None and not self.reads_datapath_efficiency:
            raise ValueError(f"efficiency.expert_gemm: not used by kind '{self.kind}' (only gpu configs read it)")
        if expert is not None and expert.dtype not in self.compute.matrix:
            raise ValueError(f"efficiency.expert_gemm.dtype: no such datapath in compute.matrix "
                             f"(allowed: {', '.join(self.compute.matrix)})")
        for dtype in given:
            if dtype not in self.compute.matrix:
                raise ValueError(f"efficiency.datapath.{dtype}: no such datapath in compute.matrix "
                                 f"(allowed: {', '.join(self.compute.matrix)})")
        return self

    @model_validator(mode="after")
    def _active_units_exist(self):
        given = self.power.active or {}
        memory = getattr(self, "memory", None)
        levels = [k for k in (type(memory).model_fields if memory is not None else {})
                  if isinstance(getattr(memory, k), MemoryLevel)]
        for unit in given:
            if unit != "compute" and unit not in levels:
                allowed = ", ".join(["compute", *levels])
                raise ValueError(f"power.active.{unit}: no such unit on this chip (allowed: {allowed})")
        return self

    def custom_all_reduce_limit(self) -> float | None:
        """Largest all-reduce a serving engine's own peer-to-peer kernel takes (None: none)."""
        return None

    def matrix_peak(self, dtype: str) -> float:
        """Peak matrix FLOP/s for a datapath; narrower formats fall back to the nearest wider one
        the hardware has (an int4 matmul on a chip without int4 units runs at int8 or bf16)."""
        return self.compute.matrix[cast(DType, self.fallback_dtype(dtype))]

    def fallback_dtype(self, dtype: str) -> str:
        if dtype in self.compute.matrix:
            return dtype
        # Widths compare by element, not storage: a block-scaled format's scales are applied per
        # block outside the multipliers, so nvfp4 on a chip without FP4 tensor cores (Hopper)
        # runs on its fp8 datapath and mxfp8 on plain fp8.
        wider = [d for d in self.compute.matrix if element_bits(d) >= element_bits(dtype)]
        # A float format needs a float datapath (fp8 on A100 runs at bf16, not int8); integer
        # and ternary formats run on the narrowest integer datapath that holds them.
        family = [d for d in wider if is_float(d) == is_float(dtype)]
        if family or wider:
            return min(family or wider, key=lambda d: (element_bits(d), bits(d)))
        return max(self.compute.matrix, key=bits)

    def mac_energy(self, dtype: str) -> float:
        """Energy of one MAC on the datapath that runs ``dtype``: a format the chip has no units
        for (ternary on a GPU) pays for the wider datapath it falls back to, so add-only energy
        is charged only where the hardware has a ternary (add-only) datapath."""
        datapath = cast(DType, self.fallback_dtype(dtype))
        return self.energy.mac.get(datapath, max(self.energy.mac.values()))

    def has_datapath(self, dtype: str) -> bool:
        return dtype in self.compute.matrix


AttentionKernel = Literal["grouped", "per_query_head"]


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
    # Host-side work of the inference engine per forward step (scheduling, input preparation,
    # sampling): charged once per model step by ``gpu.schedule``, never per kernel, so
    # single-kernel costs (``accelsim op``, the GEMM validation points) do not include it.
    step_overhead: Seconds = "0 s"  # type: ignore[assignment]  # parsed like the YAML
    # Host-side work per sequence in a step, on top of ``step_overhead``: an engine whose Python
    # loop builds, detokenises and returns every sequence's output each step (vLLM 0.5,
    # ``runtimes/vllm-0.5.4.yaml``) idles the GPU longer the more sequences a step holds.
    sequence_overhead: Seconds = "0 s"  # type: ignore[assignment]  # parsed like the YAML
    # Host-side work per step for each worker beyond the first when a model spans several GPUs
    # (tensor and pipeline parallel): an engine whose driver process prepares each step's inputs
    # and hands them to every other worker before any of them starts (vLLM 0.5's
    # ``broadcast_tensor_dict``) idles all of them for it.  Charged once per step as
    # ``worker_overhead x (chips - 1)`` (``Backend.worker_step_s``); 0 for the configs as calibrated.
    worker_overhead: Seconds = "0 s"  # type: ignore[assignment]  # parsed like the YAML
    # Share of (TDP - idle) the GPU draws above idle while it waits through that host work: it
    # stays at full clocks with the engine's context live, so a host-bound engine's gaps cost
    # more than idle power (``hardware.power.host_wait_j``).  0 for the configs as calibrated,
    # whose per-step host work is microseconds.
    # strict: YAML's true or a quoted '0.5' is a typo, not a share
    host_wait_share: float = Field(default=0.0, ge=0.0, le=1.0, strict=True)
    # Per-request work of the serving runtime (request setup, tokenisation hand-off, first-token
    # return): paid once per request with its first token, never per step, so ``accelsim run``
    # step latency excludes it; ``accelsim serve`` adds it to each request's TTFT.
    request_overhead: Seconds = "0 s"  # type: ignore[assignment]  # parsed like the YAML
    # Pointwise ops run in the epilogue/prologue of a neighbouring kernel (``sim.fusion``), as
    # TensorRT-LLM and vLLM do; ``none`` launches every op as its own kernel.
    fusion: Policy = "epilogue"
    # Pointwise ops the kernel library runs as kernels of their own even so (``sim.fusion``):
    # ``gated_activation`` (no fused GEMM + SwiGLU kernel), ``context_rope`` (RoPE in its own
    # kernel before a prefill's attention).
    unfused: list[Unfused] = Field(default_factory=list)
    # How the attention kernel treats grouped-query heads: ``grouped`` packs the query heads that
    # share a KV head into one tile and streams their K/V once (FlashAttention-2, XQA,
    # FlashInfer); ``per_query_head`` runs each query head as its own CTA, which streams its KV
    # head's cache again -- the masked-MHA decode kernels of 2023 (TensorRT-LLM before XQA, vLLM's
    # paged attention), which gave GQA models none of their KV-bandwidth saving.
    attention: AttentionKernel = "grouped"
    # The narrowest format the attention kernel computes in: a library whose fused attention only
    # takes 16-bit inputs (TensorRT-LLM before its FP8 context FMHA) runs an fp8 engine's attention
    # on the fp16 datapath at half the fp8 rate.  None: the model's activation format.
    attention_dtype: DType | None = None
    # Fixed time of one wave of attention work units (one CTA per SM): loading the queries, the
    # final softmax reduction and writing the output are dependent HBM round trips that a short
    # K/V range per unit cannot hide.  It grows with sequences x heads, not with bytes, which is
    # why a large batch of short contexts decodes slower than its KV bytes say (docs/validation.md).
    attention_unit_overhead: Seconds = "0 s"  # type: ignore[assignment]  # parsed like the YAML
    # Share of the calibrated memory bandwidth (``efficiency.memory``) the attention kernel's K/V
    # reads reach: 1 for the kernels the chip was calibrated on; a serving runtime whose attention
    # kernel streams the cache more slowly (vLLM's paged KV: ``runtimes/vllm.yaml``) sets less.
    # The units stay busy for the longer time, so the chip's memory activity power is kept.
    attention_bandwidth: Fraction = 1.0
    # Largest all-reduce the serving engine runs with its own peer-to-peer kernel instead of the
    # collective library's ring (vLLM's and TensorRT-LLM's custom all-reduce: each GPU reads its
    # peers' buffers over NVLink in one or two shots, ``hardware/interconnect.py``).  None: the
    # library's ring for every size -- what the chip's link latency was measured with.
    custom_all_reduce: Bytes | None = None
    source: Source


class GpuSpec(HardwareBase):
    reads_datapath_efficiency: ClassVar[bool] = True
    kind: Literal["gpu"]
    memory: GpuMemory
    gpu: GpuSection

    def custom_all_reduce_limit(self) -> float | None:
        return self.gpu.custom_all_reduce


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
    # Host-side work of the runtime per forward step (dispatching the compiled step, fetching the
    # sampled tokens), as ``gpu.step_overhead``: once per model step, never per op.
    step_overhead: Seconds = "0 s"  # type: ignore[assignment]  # parsed like the YAML
    fusion: Literal["none", "epilogue"] = "epilogue"  # XLA fuses pointwise ops into GEMMs (sim.fusion)
    source: Source


def _disagrees(stated: Any, derived: Any) -> Any:
    """A stated peak off by more than 3 % from the one the datapath's shape implies (numbers, or
    arrays over design points, elementwise)."""
    return abs(derived - stated) > 0.03 * stated


def _check_peak(dtype: str, stated: float, derived: float, rule: str) -> None:
    """A stated peak must agree (within 3 %) with the one the datapath's shape implies: a typo in
    either is the commonest way a config silently gives wrong speeds."""
    if _disagrees(stated, derived):
        raise ValueError(f"compute.matrix.{dtype} ({stated / 1e12:.4g} TFLOPS) disagrees with "
                         f"{rule} ({derived / 1e12:.4g} TFLOPS)")


def peaks_agree(checks: Iterable[tuple[str, Any, Any, str]]) -> Any:
    """``_check_peak`` over design points (a spec seen column-wise): per point True where every
    stated peak agrees and both peaks are finite numbers -- where it surely passes; False where
    it fails or might (NaN, infinities: the caller checks those points on their own)."""
    with np.errstate(all="ignore"):
        ok: Any = True
        for _dtype, stated, derived, _rule in checks:
            ok = ok & np.isfinite(stated) & np.isfinite(derived) & ~_disagrees(stated, derived)
        return ok


class SystolicSpec(HardwareBase):
    kind: Literal["systolic"]
    memory: SystolicMemory
    systolic: SystolicSection

    @model_validator(mode="after")
    def _peak_matches_array(self):
        for check in self.peak_checks():
            _check_peak(*check)
        return self

    def peak_checks(self) -> Iterator[tuple[str, Any, Any, str]]:
        """(dtype, stated peak, the peak the array implies, the rule) per stated peak, lazily
        (each check raises before the next is worked out); ``hw`` may be seen column-wise."""
        s = self.systolic
        for dtype, per_pe in s.macs_per_pe.items():
            derived = 2.0 * s.arrays * s.rows * s.cols * per_pe * self.compute.clock
            stated = self.compute.matrix.get(dtype)
            if stated is not None:
                yield dtype, stated, derived, "2 x arrays x rows x cols x macs_per_pe x clock"


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
        for check in self.peak_checks():
            _check_peak(*check)
        return self

    def peak_checks(self) -> Iterator[tuple[str, Any, Any, str]]:
        """(dtype, stated peak, the peak the MACs imply, the rule): the weight dtype's peak must
        be given; ``hw`` may be seen column-wise."""
        h = self.hardwired
        stated = self.compute.matrix.get(h.weight_dtype)
        if stated is None:
            raise ValueError(f"compute.matrix must give the peak for the weight dtype '{h.weight_dtype}'")
        yield h.weight_dtype, stated, 2.0 * h.macs * self.compute.clock, "2 x hardwired.macs x clock"


class DataflowMemory(Spec):
    """On-chip SRAM, and optionally off-chip tiers behind it (SambaNova SN40L: HBM, then DDR):
    a model whose bytes fit the SRAM lives there; otherwise its weights and KV cache live in the
    first off-chip tier that holds them and stream through the SRAM (``hardware.dataflow``)."""

    sram: MemoryLevel
    hbm: MemoryLevel | None = None
    ddr: MemoryLevel | None = None


class DataflowSection(Spec):
    op_overhead: Seconds  # issue time per op (statically scheduled chips: small)
    # Chips joined all to all in one node (a GroqNode's 8 cards; 1 for a wafer-scale system):
    # the tensor-parallel split inside each stage when the system's size is given alone.
    node_chips: PositiveInt = 1
    # How an op reaches its weights and KV cache in SRAM (``hardware.dataflow.resident_read_s``):
    # ``streamed``, from the whole chip's SRAM through shared functional units (Groq's TSP);
    # ``stationary``, in place on the cores that hold them, each core reading only its own SRAM
    # (a wafer's distributed memory), so an op reads at its share of the chip's bandwidth.
    weights: Literal["streamed", "stationary"] = "streamed"
    source: Source


class DataflowSpec(HardwareBase):
    """SRAM-only chips that span as many chips as a model's bytes need (``hardware.dataflow``)."""

    kind: Literal["dataflow"]
    memory: DataflowMemory
    dataflow: DataflowSection

    @model_validator(mode="after")
    def _needs_links(self):
        if self.interconnect is None:
            raise ValueError("a dataflow system spans chips: give its interconnect section")
        return self


HardwareSpec = GpuSpec | SystolicSpec | HardwiredSpec | DataflowSpec
