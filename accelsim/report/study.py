"""A study's report: one comparison report per (model, workload) plus an index with the grids
of tokens/s, J/token and $/Mtoken (model x chip) that a reader scans first."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from accelsim.report.compare import TEMPLATES, roof_of, write_report
from accelsim.study import StudyCell, StudySpec

METRICS = {"tokens_per_s": "tokens/s", "joules_per_token": "J/token", "usd_per_mtoken": "$/Mtoken",
           "latency_s": "step latency (s)"}


def study_frame(cells: list[StudyCell]) -> pd.DataFrame:
    """One row per (model, workload, chip): the numbers, or the reason the chip cannot run it."""
    rows = []
    for cell in cells:
        dtypes = ", ".join(f"{tag} {d}" for tag, d in (("weights", cell.case.weight_dtype),
                                                        ("activations", cell.case.act_dtype),
                                                        ("KV", cell.case.kv_dtype)) if d)
        model = f"{cell.case.model} ({dtypes})" if dtypes else cell.case.model
        base = {"model": model, "workload": cell.workload.describe(), "report": cell.slug}
        for r in cell.results:
            band = r.trust.error_band if r.trust is not None else None
            rows.append({**base, "hw": r.hw, "status": "ok", "chips": r.chips,
                         **{m: getattr(r, m) for m in METRICS},
                         "trust": r.trust.label if r.trust is not None else "",
                         "error_band_low": band[0] if band else None,
                         "error_band_high": band[1] if band else None,
                         "trust_short": r.trust.short if r.trust is not None else ""})
        rows += [{**base, "hw": f.hw, "status": f"cannot run: {f.reason}"} for f in cell.refusals]
    return pd.DataFrame(rows)


def metric_grid(frame: pd.DataFrame, metric: str) -> pd.DataFrame:
    """(model, workload) x chip table of one metric; chips that cannot run show a dash."""
    ok = frame[frame["status"] == "ok"]
    grid = ok.pivot_table(index=["model", "workload"], columns="hw", values=metric, aggfunc="first")
    all_hw = list(dict.fromkeys(frame["hw"]))
    grid = grid.reindex(columns=all_hw)
    index = pd.MultiIndex.from_frame(frame[["model", "workload"]].drop_duplicates())
    return grid.reindex(index)


def _fmt(value: float) -> str:
    """Four significant digits, thousands separated, never exponent notation above 1."""
    if pd.isna(value):
        return "–"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.4g}"


def write_study(study: StudySpec, cells: list[StudyCell], out_dir: Path) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    for cell in cells:
        write_report(cell.results, cell.refusals, {c.name: roof_of(c) for c in cell.chips},
                     out_dir / cell.slug, f"{cell.case.model}: {', '.join(cell.case.hardware)}",
                     cell.workload.describe())
    frame = study_frame(cells)
    files = {"csv": out_dir / "study.csv", "markdown": out_dir / "index.md",
             "html": out_dir / "index.html"}
    frame.to_csv(files["csv"], index=False)
    grids = {label: metric_grid(frame, metric).map(_fmt).reset_index()
             for metric, label in METRICS.items()}
    # Which of those numbers rest on measurements (accelsim.trust): a grid of labels and bands.
    grids["trust (held-out error band)"] = metric_grid(frame, "trust_short").fillna("–").reset_index()
    refusals = frame[frame["status"] != "ok"][["model", "workload", "hw", "status"]]
    context = {"title": study.title, "reports": [c.slug for c in cells],
               "refusals": refusals.to_dict("records")}
    files["markdown"].write_text(TEMPLATES.get_template("study.md.j2").render(
        **context, grids={k: g.to_markdown(index=False) for k, g in grids.items()}), encoding="utf-8")
    files["html"].write_text(TEMPLATES.get_template("study.html.j2").render(
        **context, grids={k: g.to_html(index=False, border=0) for k, g in grids.items()}),
        encoding="utf-8")
    return files
