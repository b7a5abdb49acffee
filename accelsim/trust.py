"""How far a result can be trusted, computed from the validation table, never typed by hand.

The validation table (``validation/trust_table.csv``, written by ``accelsim validate --subset all
--trust-table``) has one row per predicted measurement: the chip, the metric, the half of the
split it is in, the signed error of accelsim's prediction and the measurement's status.  From it
a chip's label for a phase is:

* ``design``: the spec is not a bundled config as shipped (a sweep's design point, an edited
  YAML): no measurement can speak for it.
* ``datasheet``: no measured row on this chip: every number rests on published peaks and
  estimates.
* ``vendor-claim``: its only rows are vendor claims (marketing figures), not measurements.
* ``validated``: held-out rows of the phase's metrics (``PHASE_METRICS``) have a median |error|
  within the bound.
* ``calibrated``: it has measured rows but none of the phase's metrics held out (kernel rows
  alone do not check a model step), or their held-out median is above the bound: fitted, not
  (yet) confirmed.

``error_band`` is the spread of the held-out signed errors (lowest, highest) of the metrics
that decided the label: how far off a held-out measurement was at worst on each side.  None
where no held-out row exists.
"""
from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

Label = Literal["validated", "calibrated", "vendor-claim", "datasheet", "design"]
LABELS: tuple[str, ...] = ("validated", "calibrated", "vendor-claim", "datasheet", "design")
TABLE_COLUMNS = ("hw", "metric", "split", "error", "status", "family")
DEFAULT_BOUND = 0.15  # the bound `accelsim validate` checks (its --max-error default)

# Which validation metrics speak for a phase's numbers: a decode step's latency and throughput
# are what TPOT and decode-dominated throughputs measure; a prefill's what TTFT and
# prefill-dominated throughputs measure.
PHASE_METRICS: dict[str, tuple[str, ...]] = {
    "decode": ("tpot", "decode_throughput", "mixed_throughput"),
    "prefill": ("ttft", "prefill_throughput", "mixed_throughput"),
}


@dataclass(frozen=True)
class Row:
    """One predicted measurement of the validation table."""

    hw: str
    metric: str
    split: str
    error: float      # predicted / measured - 1
    status: str       # the measurement's status column ("measured ...", "claim ...")
    family: str = ""  # the chip family calibrated together (validation/points.yaml `families:`)

    @property
    def is_claim(self) -> bool:
        return self.status.strip().lower().startswith("claim")


@dataclass(frozen=True)
class Trust:
    label: Label
    error_band: tuple[float, float] | None = None
    median_abs_error: float | None = None
    points: int = 0          # held-out rows behind the label (0: none)
    basis: str = ""          # one line saying why

    def to_dict(self) -> dict:
        return {"trust": self.label,
                "error_band": list(self.error_band) if self.error_band is not None else None,
                "trust_median_abs_error": self.median_abs_error, "trust_points": self.points,
                "trust_basis": self.basis}

    @property
    def short(self) -> str:
        """The label with its band, for report tables: 'validated (-8%..+12%)'."""
        if self.error_band is None:
            return self.label
        low, high = self.error_band
        return f"{self.label} ({100 * low:+.0f}%..{100 * high:+.0f}%)"


def rows_from_records(records: Iterable[Mapping[str, object]]) -> list[Row]:
    """Table rows from CSV/JSON records (the columns of ``TABLE_COLUMNS``)."""
    return [Row(str(r["hw"]), str(r["metric"]), str(r["split"]), float(str(r["error"])),
                str(r.get("status", "") or ""), str(r.get("family", "") or "")) for r in records]


def trust_of(hw: str, phase: str, table: Iterable[Row], *, design: bool = False,
             family: str | None = None, bound: float = DEFAULT_BOUND) -> Trust:
    """The label of chip ``hw`` for a step of ``phase`` (``prefill`` / ``decode``).

    ``family``: the chip family whose shared constants the config carries (``efficiency.family``):
    a member with no rows of its own is judged by its family's rows, and says so."""
    if design:
        return Trust("design", basis="not a bundled config as shipped: a design point")
    rows = list(table)
    mine = [r for r in rows if r.hw == hw]
    if not mine and family:
        kin = [r for r in rows if r.family == family]
        if kin:
            t = trust_of(hw, phase, [Row(hw, r.metric, r.split, r.error, r.status, r.family) for r in kin],
                         bound=bound)
            chips = ", ".join(sorted({r.hw for r in kin}))
            return Trust(t.label, t.error_band, t.median_abs_error, t.points,
                         f"no rows of its own; {family} family constants, judged on {chips}: {t.basis}")
    if not mine:
        return Trust("datasheet", basis="no measurement of this chip in the validation table")
    measured = [r for r in mine if not r.is_claim]
    if not measured:
        return Trust("vendor-claim", basis=f"only vendor claims ({len(mine)}) in the validation table")
    # Only held-out rows of the phase's own metrics speak for it: a chip validated on GEMM
    # kernels alone has not been checked end to end.
    wanted = PHASE_METRICS.get(phase, ())
    decisive = [r for r in measured if r.split == "holdout" and r.metric in wanted]
    if not decisive:
        return Trust("calibrated", basis=f"{len(measured)} measured rows, none held out for "
                                         f"{phase} ({', '.join(wanted)})")
    errors = [r.error for r in decisive]
    median = statistics.median(abs(e) for e in errors)
    band = (min(errors), max(errors))
    label: Label = "validated" if median <= bound else "calibrated"
    verdict = "within" if label == "validated" else "above"
    return Trust(label, band, median, len(decisive),
                 f"{len(decisive)} held-out rows ({phase} metrics): median |error| {100 * median:.1f} % "
                 f"{verdict} the {100 * bound:.0f} % bound")
