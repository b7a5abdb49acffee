"""``Timeline``: what ran where and when, as plain data produced by the event-driven engine.

A timeline is a set of busy intervals, one per activity on one resource (a compute unit, a DMA
channel, a memory port, a chip link, a pipeline stage), plus the chain of activities that set
the makespan (the critical path).  Utilisation is the union of a resource's busy intervals over
the makespan, so a port shared by overlapping activities never reads above 100 %.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pandas is imported when a table is asked for
    import pandas as pd


@dataclass(frozen=True)
class Interval:
    """One activity: ``name`` busy on ``resource`` from ``start_s`` to ``end_s``."""

    resource: str
    name: str
    kind: str
    start_s: float
    end_s: float
    group: int = 0
    round: int = 0
    clock_hz: float | None = None

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s

    @property
    def cycles(self) -> float | None:
        """Duration in cycles of the resource's clock domain (None where no clock is known)."""
        return None if self.clock_hz is None else self.duration_s * self.clock_hz


@dataclass(frozen=True)
class Timeline:
    intervals: tuple[Interval, ...]
    makespan_s: float
    critical_path: tuple[Interval, ...] = ()
    analytical_s: float | None = None  # the per-op analytical sum this run can be checked against
    notes: tuple[str, ...] = field(default_factory=tuple)

    def resources(self) -> list[str]:
        """Resources in order of first use (compute units first within a tie)."""
        first: dict[str, float] = {}
        for iv in self.intervals:
            first[iv.resource] = min(first.get(iv.resource, iv.start_s), iv.start_s)
        return sorted(first, key=lambda r: (first[r], r))

    def by_resource(self) -> dict[str, list[Interval]]:
        grouped: dict[str, list[Interval]] = defaultdict(list)
        for iv in self.intervals:
            grouped[iv.resource].append(iv)
        return {r: sorted(v, key=lambda i: i.start_s) for r, v in grouped.items()}

    def busy_s(self) -> dict[str, float]:
        """Per resource, the length of the union of its busy intervals."""
        return {r: union_length([(i.start_s, i.end_s) for i in ivs])
                for r, ivs in self.by_resource().items()}

    def utilisation(self) -> dict[str, float]:
        if self.makespan_s <= 0:
            return {r: 0.0 for r in self.resources()}
        return {r: busy / self.makespan_s for r, busy in self.busy_s().items()}

    @property
    def max_busy_s(self) -> float:
        """The busiest single resource: no schedule can finish before it does."""
        return max(self.busy_s().values(), default=0.0)

    def frame(self) -> pd.DataFrame:
        import pandas as pd  # only a table asks for it: a large import kept off the step
        return pd.DataFrame([{
            "resource": i.resource, "name": i.name, "kind": i.kind, "start_s": i.start_s,
            "end_s": i.end_s, "duration_s": i.duration_s, "group": i.group, "round": i.round,
            "cycles": i.cycles} for i in self.intervals])

    def summary(self) -> dict:
        return {
            "makespan_s": self.makespan_s, "analytical_s": self.analytical_s,
            "utilisation": self.utilisation(), "busy_s": self.busy_s(),
            "critical_path": [{"resource": i.resource, "name": i.name, "start_s": i.start_s,
                               "end_s": i.end_s} for i in self.critical_path],
            "notes": list(self.notes),
        }


def union_length(spans: list[tuple[float, float]]) -> float:
    """Total length covered by possibly overlapping [start, end) spans."""
    total, reach = 0.0, float("-inf")
    for start, end in sorted(spans):
        if end <= reach:
            continue
        total += end - max(start, reach)
        reach = end
    return total
