"""Cost one op on one chip outside any model: what `accelsim op` prints.

The op is costed by the chip's own backend under the mapping the mapper would pick (or the
dataflow the user forces), with every operand starting and ending in off-chip memory, as a
stand-alone kernel call does.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from accelsim import hardware
from accelsim.config.units import format_si
from accelsim.errors import AccelsimError
from accelsim.graph import MatMul, Tensor
from accelsim.hardware.base import OpCost
from accelsim.hardware.spec import HardwareBase
from accelsim.pipeline import cost_alone


@dataclass(frozen=True)
class OpReport:
    hw: str
    hw_kind: str
    op: dict
    mapping: str
    bound: str
    cycles: float          # the op's time in chip clock cycles
    compute_cycles: float  # the arithmetic alone, in clock cycles
    time_s: float
    compute_s: float
    memory_s: dict[str, float]
    bytes: dict[str, float]
    energy_j: dict[str, float]
    energy_total_j: float
    flops: float
    peak_flops: float
    utilisation: float

    def to_dict(self) -> dict:
        return asdict(self)

    def text(self) -> str:
        shape = " ".join(f"{k}={v}" for k, v in self.op.items() if k in ("m", "k", "n", "count"))
        lines = [
            f"{self.op['kind']} {shape} {self.op['dtype']} on {self.hw} ({self.hw_kind})",
            f"  mapping      {self.mapping}",
            (f"  time         {format_si(self.time_s, 's')} ({self.cycles:,.0f} cycles; "
             f"compute {self.compute_cycles:,.0f} cycles), {self.bound}-bound"),
            f"  utilisation  {self.utilisation:.1%} of {format_si(self.peak_flops, 'FLOP/s')}",
        ]
        for level, moved in self.bytes.items():
            lines.append(f"  {level:<12} {format_si(moved, 'B')} in "
                         f"{format_si(self.memory_s.get(level, 0.0), 's')}")
        parts = ", ".join(f"{k} {format_si(v, 'J')}" for k, v in self.energy_j.items())
        lines.append(f"  energy       {format_si(self.energy_total_j, 'J')} ({parts})")
        return "\n".join(lines)


def matmul_op(m: int, k: int, n: int, count: int, dtype: str) -> MatMul:
    """A stand-alone GEMM; a ternary B multiplies int8 activations (add-only)."""
    a_dtype = "int8" if dtype == "ternary" else dtype
    a = Tensor("A", (count, m, k), a_dtype, "activation")
    b = Tensor("B", (count, k, n), dtype, "weight")
    c = Tensor("C", (count, m, n), a_dtype, "activation")
    return MatMul("matmul", (a, b), (c,), m=m, k=k, n=n, count=count)


def cost_matmul(op: MatMul, chip: HardwareBase, dataflow: str | None = None) -> OpCost:
    """``op`` alone (``pipeline.cost_alone``), under the dataflow the user forces if any."""
    if dataflow is None:
        return cost_alone(op, chip)
    allowed = hardware.backend(chip).dataflows(chip)
    if not allowed:
        raise AccelsimError(f"--dataflow applies to systolic chips; {chip.name} is a {chip.kind}")
    if dataflow not in allowed:
        raise AccelsimError(f"{chip.name} offers dataflows {', '.join(allowed)}; got {dataflow!r}")
    return cost_alone(op, chip, lambda m: m.params.get("dataflow") == dataflow)


def matmul_report(chip: HardwareBase, *, m: int, k: int, n: int, count: int = 1,
                  dtype: str = "bf16", dataflow: str | None = None) -> OpReport:
    op = matmul_op(m, k, n, count, dtype)
    cost = cost_matmul(op, chip, dataflow)
    clock = chip.compute.clock
    return OpReport(
        hw=chip.name, hw_kind=chip.kind,
        op={"kind": "matmul", "m": m, "k": k, "n": n, "count": count, "dtype": dtype,
            "datapath": chip.fallback_dtype(op.compute_dtype), "add_only": op.add_only},
        mapping=cost.mapping, bound=cost.bound, cycles=cost.time_s * clock,
        compute_cycles=cost.compute_s * clock, time_s=cost.time_s, compute_s=cost.compute_s,
        memory_s=cost.memory_s, bytes=cost.bytes, energy_j=cost.energy_j,
        energy_total_j=cost.energy_total, flops=cost.flops, peak_flops=cost.peak_flops,
        utilisation=cost.utilisation)
