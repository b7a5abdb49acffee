"""``Result``: what one simulated step says, as plain data (dataclass, dict, DataFrame)."""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

from accelsim.hardware.base import OpCost
from accelsim.trust import Trust

DTYPE_TAGS = (("weight", "w"), ("activation", "a"), ("kv", "kv"))


def precision_note(results: "list[Result]") -> str | None:
    """A heading's warning when rows ran in different formats ('weights: int4 on X, bf16 on Y'),
    None when every row ran in the same ones."""
    differing = []
    for key, _ in DTYPE_TAGS:
        seen: dict[str, list[str]] = {}
        for r in results:
            if key in r.dtypes:
                seen.setdefault(r.dtypes[key], []).append(r.hw)
        if len(seen) > 1:
            differing.append(f"{key}s " + ", ".join(f"{d} on {' and '.join(dict.fromkeys(hws))}"
                                                    for d, hws in seen.items()))
    if not differing:
        return None
    return "unlike precisions: " + "; ".join(differing)


@dataclass(frozen=True)
class Refusal:
    """A chip that cannot run the asked-for model/workload, and why: a real cliff (does not fit,
    weights of another model in silicon), shown next to the results rather than dropped."""

    hw: str
    reason: str
    workload: dict | None = None  # the step asked for, as Result.workload has it

    def to_dict(self) -> dict:
        return {"hw": self.hw, "workload": self.workload, "status": "cannot run", "reason": self.reason}


@dataclass(frozen=True)
class Result:
    model: str
    hw: str
    hw_kind: str
    workload: dict
    latency_s: float
    tokens_per_s: float
    joules_per_token: float
    energy_j: dict[str, float]
    ops: list[OpCost]
    footprint_bytes: dict[str, float]
    groups: int = 1
    notes: tuple[str, ...] = field(default_factory=tuple)
    area_mm2: float | None = None        # silicon per chip, die-to-die link ends included
    die_cost_usd: float | None = None    # one good die (custom silicon; economics.price)
    usd_per_mtoken: float | None = None  # the system's cost per 1e6 tokens (economics.price)
    chips: int = 1                       # chips in the system (all numbers above are system-wide)
    # How far these numbers are checked against measurements (``accelsim.trust``; None where the
    # caller did not ask: the pipeline alone cannot know, ``api.simulate`` attaches it).
    trust: Trust | None = None
    system: dict = field(default_factory=dict)  # multi-chip: parallelism, per-chip figures;
    # hardwired: KV + state per user and the concurrent users that fit (hardware.hardwired)
    die_mm2: float | None = None         # one die (hardware.area.split_dies)
    dies: int = 1                        # dies per chip
    reticle_limited: bool = False        # split into dies because one reticle cannot hold it
    cost: dict = field(default_factory=dict)  # capex, opex and $/Mtoken parts (economics.price)
    # Storage formats the step ran in (weight, activation, kv, state): a chip's weights fixed in
    # silicon override the asked-for format, so a table must say which ran, row by row.
    dtypes: dict[str, str] = field(default_factory=dict)

    def replaced(self, **changes: Any) -> Result:
        """``dataclasses.replace(self, **changes)`` without re-running the frozen ``__init__``
        (one field at a time through ``object.__setattr__``: ~5 us for these 25 fields, and a
        step replaces its result five times on the way out).  ``Result`` has no ``__post_init__``
        and every field is an init field, so copying the fields and setting the changed ones
        gives the same object; an unknown name is refused as ``replace`` refuses it."""
        unknown = changes.keys() - _RESULT_FIELDS
        if unknown:
            raise TypeError(f"Result has no field {min(unknown)!r}")
        new = object.__new__(Result)
        state = new.__dict__
        state.update(self.__dict__)
        state.update(changes)
        return new

    @property
    def dtype_label(self) -> str:
        """'w int4 / a bf16 / kv bf16': the formats a row's numbers are for."""
        return " / ".join(f"{tag} {self.dtypes[key]}" for key, tag in DTYPE_TAGS if key in self.dtypes)

    @property
    def layout(self) -> str:
        """'1 chip', or '72 chips: pp=72', '8 chips: tp=8 as 2x4 ep=8 attention=batch'."""
        if self.chips == 1:
            return "1 chip"
        system = self.system
        parts = []
        for key in ("tp", "pp", "dp", "ep"):
            if system.get(key, 1) > 1:
                grid = (f" as {system['tp_x']}x{system['tp'] // system['tp_x']}"
                        if key == "tp" and system.get("tp_x", 1) > 1 else "")
                parts.append(f"{key}={system[key]}{grid}")
        if system.get("attention") == "batch":
            parts.append("attention=batch")
        return f"{self.chips} chips" + (f": {' '.join(parts)}" if parts else "")

    @property
    def energy_total_j(self) -> float:
        return sum(self.energy_j.values())

    @property
    def power_w(self) -> float:
        return self.energy_total_j / self.latency_s

    @property
    def tokens_per_s_per_user(self) -> float:
        """Each sequence gets its share of the step's tokens: 1 / step time in decode."""
        return self.tokens_per_s / self.workload["batch"]

    @property
    def step_overhead_s(self) -> float:
        """Host-side time per step inside ``latency_s`` that belongs to no op (``gpu.`` /
        ``systolic.step_overhead``; 0 where the chip has none)."""
        return self.system.get("step_overhead_s", 0.0)

    @property
    def tokens_per_s_per_chip(self) -> float:
        return self.tokens_per_s / self.chips

    @property
    def flops(self) -> float:
        return sum(c.flops for c in self.ops) * self.groups

    def ops_frame(self) -> pd.DataFrame:
        import pandas as pd  # only the tables need it: kept off the CLI's start-up path

        rows = [{
            "name": c.op, "kind": c.kind, "layer": c.layer, "time_s": c.time_s,
            "compute_s": c.compute_s, "bound": c.bound, "regime": c.regime, "dtype": c.dtype,
            "flops": c.flops,
            "bytes": sum(c.bytes.values()), "energy_j": c.energy_total, "utilisation": c.utilisation,
            "mapping": c.mapping, **{f"bytes_{k}": v for k, v in c.bytes.items()},
        } for c in self.ops]
        return pd.DataFrame(rows)

    def by_kind(self) -> pd.DataFrame:
        """Time, FLOPs and bytes summed per op kind, with the dominant bound of each kind."""
        frame = self.ops_frame()
        grouped = frame.groupby("kind").agg(time_s=("time_s", "sum"), flops=("flops", "sum"),
                                            bytes=("bytes", "sum"), energy_j=("energy_j", "sum"),
                                            count=("name", "count"))
        bound = frame.groupby("kind").apply(
            lambda g: g.groupby("bound")["time_s"].sum().idxmax(), include_groups=False)
        grouped["bound"] = bound
        grouped["regime"] = frame.groupby("kind").apply(
            lambda g: g.groupby("regime")["time_s"].sum().idxmax(), include_groups=False)
        return grouped.sort_values("time_s", ascending=False)

    def to_dict(self) -> dict:
        return {
            "model": self.model, "hw": self.hw, "hw_kind": self.hw_kind, "workload": self.workload,
            "latency_s": self.latency_s, "tokens_per_s": self.tokens_per_s,
            "joules_per_token": self.joules_per_token, "power_w": self.power_w,
            "energy_j": self.energy_j, "footprint_bytes": self.footprint_bytes,
            "groups_in_flight": self.groups, "notes": list(self.notes),
            "area_mm2": self.area_mm2, "die_mm2": self.die_mm2, "dies": self.dies,
            "reticle_limited": self.reticle_limited, "die_cost_usd": self.die_cost_usd,
            "usd_per_mtoken": self.usd_per_mtoken, "cost": self.cost,
            "chips": self.chips, "tokens_per_s_per_chip": self.tokens_per_s_per_chip,
            "tokens_per_s_per_user": self.tokens_per_s_per_user,
            "step_overhead_s": self.step_overhead_s,
            "dtypes": self.dtypes, "layout": self.layout,
            "system": self.system,
            **(self.trust.to_dict() if self.trust is not None else {"trust": None, "error_band": None}),
            "ops": [{"name": c.op, "kind": c.kind, "layer": c.layer, "time_s": c.time_s,
                     "bound": c.bound, "regime": c.regime, "dtype": c.dtype, "flops": c.flops,
                     "bytes": c.bytes,
                     "energy_j": c.energy_total, "utilisation": c.utilisation, "mapping": c.mapping}
                    for c in self.ops],
        }


_RESULT_FIELDS = frozenset(f.name for f in fields(Result))
