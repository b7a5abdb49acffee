"""Run every selected point, compare with its measurement, summarise the errors, write reports."""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from accelsim.api import resolve_hardware
from accelsim.errors import AccelsimError
from accelsim.hardware.spec import HardwareBase
from accelsim.validate.points import Catalogue, Point, select, split
from accelsim.validate.predict import Calibration, calibrated, predict_measured

POINT_COLUMNS = ("id", "hw", "metric", "split", "model", "dtype", "chips", "batch", "input_len",
                 "output_len", "measured", "predicted", "unit", "error", "abs_error", "decode_share",
                 "status", "source")
STAT_COLUMNS = ("points", "median_abs_error", "mean_abs_error", "max_abs_error")
SUMMARY_COLUMNS = ("hw", "metric", "split", *STAT_COLUMNS)


@dataclass(frozen=True)
class Validation:
    points: pd.DataFrame         # one row per predicted point (POINT_COLUMNS)
    skipped: pd.DataFrame        # selected points accelsim cannot predict yet: id, hw, metric, reason
    summary: pd.DataFrame        # SUMMARY_COLUMNS, per hardware x metric x split
    gate: pd.DataFrame           # the groups the bound is checked on, with a `pass` column
    max_error: float

    @property
    def passed(self) -> bool:
        return bool(self.gate["pass"].all()) if len(self.gate) else True


def hardware_for(points: list[Point], overrides: dict[str, Calibration] | None = None) -> dict[str, HardwareBase]:
    chips = {}
    for name in sorted({p.hw for p in points}):
        hw = resolve_hardware(name)
        if overrides and name in overrides:
            hw = calibrated(hw, overrides[name])
        chips[name] = hw
    return chips


def evaluate(catalogue: Catalogue, points: list[Point], chips: dict[str, HardwareBase],
             done: Callable[[], None] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Predicted against measured for each point (``done`` is called after each, for a
    progress bar)."""
    assignment = split(catalogue.points)
    rows, skipped = [], []
    for p in points:
        if done is not None:
            done()
        measured = catalogue.measured(p)
        try:
            predicted = predict_measured(p, chips[p.hw], catalogue)
        except AccelsimError as err:
            # The measurement ran, so this is a modelling or config gap (capacity, a missing
            # interconnect section), reported with the point rather than ending the run.
            skipped.append({"id": p.id, "hw": p.hw, "metric": p.metric, "reason": err.one_line()})
            continue
        error = predicted.value / measured.value - 1.0
        rows.append({
            "id": p.id, "hw": p.hw, "metric": p.metric, "split": assignment[p.id], "model": p.model,
            "dtype": p.dtype, "chips": p.chips, "batch": p.batch, "input_len": p.input_len,
            "output_len": p.output_len, "measured": measured.value, "predicted": predicted.value,
            "unit": measured.unit, "error": error, "abs_error": abs(error),
            "decode_share": predicted.decode_share, "status": measured.status,
            "source": f"{p.source.file}:{p.source.row}",
        })
    frame = pd.DataFrame(rows, columns=list(POINT_COLUMNS))
    return frame, pd.DataFrame(skipped, columns=["id", "hw", "metric", "reason"])


def summarise(frame: pd.DataFrame, by: tuple[str, ...] = ("hw", "metric", "split")) -> pd.DataFrame:
    if frame.empty:
        return pd.DataFrame(columns=[*by, *STAT_COLUMNS])
    grouped = frame.groupby(list(by), sort=True)["abs_error"]
    out = grouped.agg(points="count", median_abs_error="median", mean_abs_error="mean",
                      max_abs_error="max").reset_index()
    return out


def gate(frame: pd.DataFrame, max_error: float) -> pd.DataFrame:
    """Median |error| per (hardware, metric) on the holdout points among those run; when none of
    them is a holdout point (``--subset calibration`` / ``smoke``), on all of them."""
    checked = frame[frame["split"] == "holdout"]
    if checked.empty:
        checked = frame
    table = summarise(checked, by=("hw", "metric"))
    table["bound"] = max_error
    table["pass"] = table["median_abs_error"] <= max_error
    return table


def validate(subset: str = "all", max_error: float = 0.15, points_path: Path | None = None,
             overrides: dict[str, Calibration] | None = None,
             done: Callable[[], None] | None = None) -> Validation:
    catalogue = Catalogue(points_path) if points_path else Catalogue()
    points = select(catalogue, subset)
    frame, skipped = evaluate(catalogue, points, hardware_for(points, overrides), done)
    return Validation(frame, skipped, summarise(frame), gate(frame, max_error), max_error)


def trust_frame(result: Validation, families: dict[str, list[str]] | None = None) -> pd.DataFrame:
    """The validation table trust labels are computed from (``accelsim.trust.TABLE_COLUMNS``):
    one row per predicted point, with the chip family it belongs to (``families``)."""
    from accelsim.trust import TABLE_COLUMNS
    family_of = {hw: name for name, members in (families or {}).items() for hw in members}
    frame = result.points.assign(family=result.points["hw"].map(lambda h: family_of.get(h, "")))
    return frame[list(TABLE_COLUMNS)].sort_values(["hw", "metric", "split", "error"])


def to_json(result: Validation) -> dict:
    def records(frame: pd.DataFrame) -> list[dict]:
        return json.loads(frame.to_json(orient="records"))
    return {"passed": result.passed, "max_error": result.max_error, "points": records(result.points),
            "summary": records(result.summary), "gate": records(result.gate),
            "not_yet_predictable": records(result.skipped)}


def write(result: Validation, out: Path) -> list[Path]:
    """CSV/JSON/Markdown tables and predicted-vs-measured plots under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "points.csv", out / "summary.csv", out / "validation.json", out / "validation.md"]
    result.points.to_csv(written[0], index=False)
    result.summary.to_csv(written[1], index=False)
    written[2].write_text(json.dumps(to_json(result), indent=2), encoding="utf-8")
    written[3].write_text(markdown(result), encoding="utf-8")
    from accelsim.validate.plots import scatter_plots
    written += scatter_plots(result.points, out)
    return written


def _pct(x: float) -> str:
    return "" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{100 * x:+.1f} %"


def markdown(result: Validation) -> str:
    def percent(frame: pd.DataFrame) -> pd.DataFrame:
        return frame.assign(**{c: frame[c].map(lambda v: f"{100 * v:.1f} %")
                               for c in ("median_abs_error", "mean_abs_error", "max_abs_error")})
    summary = percent(result.summary)
    points = result.points.assign(
        measured=result.points["measured"].map(lambda v: f"{v:.4g}"),
        predicted=result.points["predicted"].map(lambda v: f"{v:.4g}"),
        error=result.points["error"].map(_pct),
    )[["id", "split", "measured", "predicted", "unit", "error", "source"]]
    gate_table = percent(result.gate)
    parts = [
        "## Error summary (|error| = |predicted / measured - 1|)\n", summary.to_markdown(index=False),
        (f"\n\n## Bound check: median |error| <= {100 * result.max_error:.0f} % "
         f"({'pass' if result.passed else 'FAIL'})\n"), gate_table.to_markdown(index=False),
        "\n\n## Points\n", points.to_markdown(index=False),
    ]
    if len(result.skipped):
        parts += ["\n\n## Not yet predictable\n", result.skipped.to_markdown(index=False)]
    return "".join(parts) + "\n"
