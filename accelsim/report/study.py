"""A study's report: one comparison report per (model, workload) plus an index with the grids
of tokens/s, J/token and $/Mtoken (model x chip) that a reader scans first."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from accelsim.config.study import StudyCell, StudySpec
from accelsim.config.units import format_plain, format_rate, format_si
from accelsim.report.compare import TEMPLATES, dtype_columns, write_report

METRICS = {"tokens_per_s": "throughput (tokens/s)", "joules_per_token": "energy per token",
           "usd_per_mtoken": "cost per million tokens", "latency_s": "step latency"}
# How each metric's cells read: SI-prefixed units, counts with separators, never an exponent.
CELL = {"tokens_per_s": lambda v: format_rate(v, "tokens/s"), "joules_per_token": lambda v: format_si(v, "J"),
        "usd_per_mtoken": lambda v: f"${format_plain(v)}", "latency_s": lambda v: format_si(v, "s")}
CHART_UNITS = {"tokens_per_s": "tokens/s", "joules_per_token": "J"}


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
            rows.append({**base, "hw": r.hw, **dtype_columns(r), "formats": r.dtype_label,
                         "chips": r.chips, "layout": r.layout, "status": "ok",
                         **{m: getattr(r, m) for m in METRICS},
                         "trust": r.trust.label if r.trust is not None else "",
                         "error_band_low": band[0] if band else None,
                         "error_band_high": band[1] if band else None,
                         "trust_short": r.trust.short if r.trust is not None else ""})
        rows += [{**base, "hw": f.hw, "status": f"cannot run: {f.reason}"} for f in cell.refusals]
    return pd.DataFrame(rows)


def economics_frame(cells: list[StudyCell]) -> pd.DataFrame:
    """One row per (model, workload, custom chip, merchant chip): the breakeven at the default
    load and model life, and the shortest model life (of those tried) that breaks even within
    the deployment (``accelsim.economics.tco``)."""
    rows = []
    for cell in cells:
        if cell.tco is None:
            continue
        horizon = cell.tco.deploy_years * 12
        for b in cell.tco.breakevens:
            lives = [row["model_life_months"] for row in cell.tco.life_curve
                     if (row["custom"], row["merchant"]) == (b.custom, b.merchant)
                     and row["months"] is not None and row["months"] <= horizon]
            rows.append({"model": cell.case.model, "workload": cell.workload.describe(),
                         "custom": b.custom, "merchant": b.merchant,
                         "tokens_per_day": cell.tco.options[0].tokens_per_day,
                         "model_life_months": cell.tco.model_life_months,
                         "breakeven_tokens": b.tokens, "breakeven_months": b.months,
                         "within_deployment": b.within_deployment,
                         "shortest_life_within_deployment_months": min(lives) if lives else None})
    return pd.DataFrame(rows)


def metric_grid(frame: pd.DataFrame, metric: str) -> pd.DataFrame:
    """(model, workload) x chip table of one metric, each cell with its unit and, where the
    chip ran other formats than the rest of its row (a hardwired chip's int4 weights) or more
    than one chip, a tag saying so; chips that cannot run show a dash."""
    ok = frame[frame["status"] == "ok"].copy()
    usual = ok.groupby(["model", "workload"])["formats"].agg(lambda f: f.mode().iloc[0])
    ok["cell"] = [_cell(metric, row, usual[(row["model"], row["workload"])]) for _, row in ok.iterrows()]
    grid = ok.pivot_table(index=["model", "workload"], columns="hw", values="cell", aggfunc="first")
    grid = grid.reindex(columns=list(dict.fromkeys(frame["hw"])))
    grid.columns.name = None  # no empty "hw" header row above the chips
    index = pd.MultiIndex.from_frame(frame[["model", "workload"]].drop_duplicates())
    return grid.reindex(index).astype(object).fillna("–")


def _cell(metric: str, row: pd.Series, usual_formats: str) -> str:
    value = row[metric]
    if pd.isna(value) or value == "":
        return "–"
    if metric not in CELL:  # a label (the trust grid): no unit, and formats do not change it
        return str(value)
    tags = _tags(row["formats"], usual_formats, int(row["chips"]))
    return CELL[metric](value) + (f" ({tags})" if tags else "")


def _tags(formats: str, usual: str, chips: int) -> str:
    """What sets a cell apart from its row: the formats that differ ('w int4'), the chips."""
    parts = [part for part in formats.split(" / ") if part not in usual.split(" / ")]
    if chips > 1:
        parts.append(f"{chips} chips")
    return "; ".join(parts)


def charts(frame: pd.DataFrame, out_dir: Path) -> list[tuple[str, str]]:
    """One chart per workload: tokens/s and J/token side by side, a bar per model and chip
    (tagged with the formats that differ from the model's other rows and with its chips), log
    scales where they span decades (a hardwired chip beside a GPU)."""
    from accelsim.report import plots  # matplotlib: only when a report is drawn
    ok = frame[frame["status"] == "ok"]
    usual = ok.groupby("model")["formats"].agg(lambda f: f.mode().iloc[0])
    shown = []
    for n, (workload, rows) in enumerate(ok.groupby("workload", sort=False)):
        labels = []
        for r in rows.itertuples():
            tags = _tags(r.formats, usual[r.model], int(r.chips))
            labels.append(f"{r.hw} · {r.model}" + (f" ({tags})" if tags else ""))
        panels = {METRICS[m]: (rows[m].astype(float).tolist(), unit, m == "tokens_per_s")
                  for m, unit in CHART_UNITS.items()}
        name = f"chart_{n}.png"
        plots.metric_panels(labels, panels, workload, out_dir / name)
        shown.append((workload, name))
    return shown


def write_study(study: StudySpec, cells: list[StudyCell], out_dir: Path) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    for cell in cells:
        write_report(cell.results, cell.refusals, cell.chips,
                     out_dir / cell.slug, f"{cell.case.model}: {', '.join(cell.case.hardware)}",
                     cell.workload.describe())
    frame = study_frame(cells)
    files = {"csv": out_dir / "study.csv", "markdown": out_dir / "index.md",
             "html": out_dir / "index.html"}
    frame.to_csv(files["csv"], index=False)
    costs = economics_frame(cells)
    if not costs.empty:
        files["economics"] = out_dir / "economics.csv"
        costs.to_csv(files["economics"], index=False)
    shown = costs.copy()
    for column in ("tokens_per_day", "breakeven_tokens"):
        if column in shown:
            shown[column] = shown[column].map(lambda v: "never" if pd.isna(v) else format_plain(v))
    for column in ("breakeven_months", "shortest_life_within_deployment_months"):
        if column in shown:
            shown[column] = shown[column].map(lambda v: "never" if pd.isna(v) else f"{v:.1f}")
    grids = {label: metric_grid(frame, metric).reset_index() for metric, label in METRICS.items()}
    # Which of those numbers rest on measurements (accelsim.trust): a grid of labels and bands.
    grids["trust (held-out error band)"] = metric_grid(frame, "trust_short").fillna("–").reset_index()
    refusals = frame[frame["status"] != "ok"][["model", "workload", "hw", "status"]]
    context = {"title": study.title, "reports": [c.slug for c in cells], "charts": charts(frame, out_dir),
               "refusals": refusals.to_dict("records"),
               "economics_md": shown.to_markdown(index=False) if not shown.empty else "",
               "economics_html": shown.to_html(index=False, border=0) if not shown.empty else ""}
    files["markdown"].write_text(TEMPLATES.get_template("study.md.j2").render(
        **context, grids={k: g.to_markdown(index=False) for k, g in grids.items()}), encoding="utf-8")
    files["html"].write_text(TEMPLATES.get_template("study.html.j2").render(
        **context, grids={k: g.to_html(index=False, border=0) for k, g in grids.items()}),
        encoding="utf-8")
    return files
