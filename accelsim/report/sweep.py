"""The design-space report: Pareto front with the chosen designs labelled, parameter-sensitivity
plots with real cliffs annotated, Markdown + HTML, and a CSV of every number shown."""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import jinja2
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from accelsim.dse import reading
from accelsim.dse.metrics import STATUS_OK
from accelsim.dse.space import METRICS, Condition, to_number
from accelsim.errors import AccelsimError
from accelsim.report.cells import format_cell, unit_of

_LOADER = jinja2.PackageLoader("accelsim.report", "templates")
HTML = jinja2.Environment(loader=_LOADER, autoescape=True, trim_blocks=True, lstrip_blocks=True)
MARKDOWN = jinja2.Environment(loader=_LOADER, autoescape=False, trim_blocks=True, lstrip_blocks=True)


@dataclass(frozen=True)
class Cliff:
    key: str
    at: float
    label: str


@dataclass
class SweepSummary:
    """What the report shows, saved as ``sweep.json`` so ``accelsim report DIR`` can redraw it."""

    title: str
    model: str
    space: str
    workload: str
    search: str
    keys: list[str]
    objectives: dict[str, str]
    constraints: list[str]
    pick_metric: str
    pick_sense: str
    cliffs: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.__dict__, indent=2), encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> SweepSummary:
        return cls(**json.loads(path.read_text(encoding="utf-8")))


def _label(metric: str) -> str:
    return METRICS.get(metric, metric)


def _short(key: str) -> str:
    return key.split(".")[-1]


def pareto_plot(frame: pd.DataFrame, front: pd.DataFrame, chosen: dict[str, pd.Series],
                objectives: dict[str, str], path: Path) -> Path:
    """The first two objectives: every design, the feasible ones, the front, the chosen ones."""
    x, y = list(objectives)[:2]
    # Only the plotted columns of the designs that run: no copy of the rest of the sweep.
    ok = frame.loc[(frame["status"] == STATUS_OK).to_numpy(dtype=bool), list(dict.fromkeys([x, y, "feasible"]))]
    fig, ax = plt.subplots(figsize=(8, 5.5))
    shown, note = _thinned(ok)
    ax.scatter(shown[x], shown[y], s=8, color="#bbbbbb", label=f"infeasible (violates a constraint){note}")
    feas = ok[ok["feasible"]]
    shown, note = _thinned(feas)
    ax.scatter(shown[x], shown[y], s=10, color="#6baed6", label=f"feasible design{note}")
    f = front.sort_values(x)
    ax.plot(f[x], f[y], "-o", color="#d62728", ms=4, lw=1.2,
            label=f"Pareto front ({', '.join(f'{s} {_short(m)}' for m, s in objectives.items())})")
    labels: dict[str, list[str]] = {}
    for name, row in chosen.items():
        labels.setdefault(row["point_id"], []).append(name)
    for names in labels.values():
        row = chosen[names[0]]
        ax.scatter([row[x]], [row[y]], s=90, marker="*", color="black", zorder=5)
        right = row[x] > np.nanmedian(ok[x])  # keep labels inside the axes
        ax.annotate(" & ".join(names), (row[x], row[y]), textcoords="offset points",
                    xytext=(-6, 6) if right else (6, 6), ha="right" if right else "left", fontsize=8)
    for axis, metric, setter in ((ax.xaxis, x, ax.set_xscale), (ax.yaxis, y, ax.set_yscale)):
        values = ok[metric].to_numpy(dtype=float)
        if len(values) and values.min() > 0 and values.max() / values.min() > 30:
            setter("log")
    _ticks(ax, "x", x)
    _ticks(ax, "y", y)
    ax.set_xlabel(f"{_metric_axis(x)}, {objectives[x]}imise")
    ax.set_ylabel(f"{_metric_axis(y)}, {objectives[y]}imise")
    ax.set_title("Design space: Pareto front and chosen designs")
    ax.grid(alpha=0.3)
    # Matplotlib's "best" legend spot tests every point: fine for a grid, minutes for a million.
    ax.legend(fontsize=8, loc="best" if len(ok) <= PLOT_POINTS else "upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


# Most points a scatter draws per series; beyond it every n-th point is drawn (and the legend
# says so): a million dots draw as one grey cloud anyway.
PLOT_POINTS = 50_000


def _thinned(points: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    if len(points) <= PLOT_POINTS:
        return points, ""
    step = -(-len(points) // PLOT_POINTS)
    return points.iloc[::step], f", every {step}th shown"


def sensitivity(frame: pd.DataFrame, key: str, keys: list[str], metric: str, sense: str) -> pd.DataFrame:
    """``metric`` against ``key`` with every other parameter held at its middle grid value, plus
    the best value over all other parameters, per value of ``key`` (grouped column-wise: a
    million-point sweep has thousands of values per key)."""
    in_slice = np.ones(len(frame), dtype=bool)
    for other in keys:
        if other == key:
            continue
        levels = np.sort(frame[other].dropna().unique())
        in_slice &= (frame[other] == levels[len(levels) // 2]).to_numpy(dtype=bool)
    # The slice's rows of the three columns it uses, taken once (a million-point sweep's slice
    # is small, the sweep is not).
    held = frame.loc[in_slice, list(dict.fromkeys([key, "status", metric]))]
    ok = frame["status"] == STATUS_OK
    values = frame[key]
    groups = values.groupby(values)
    size = groups.size()
    fit_count = ok.groupby(values).sum()
    metric_ok = frame[metric].where(ok)
    best = metric_ok.groupby(values).max() if sense == "max" else metric_ok.groupby(values).min()
    held_ok = (held["status"] == STATUS_OK).groupby(held[key]).any()
    first = held[metric].groupby(held[key]).nth(0)  # the slice's first row, as it stands
    first = pd.Series(first.to_numpy(), index=held[key].loc[first.index].to_numpy())
    index = size.index
    fits = held_ok.reindex(index, fill_value=False).astype(bool)
    table = pd.DataFrame({
        key: index.to_numpy(),
        f"{metric}_slice": np.where(fits.to_numpy(), first.reindex(index).to_numpy(dtype=float), np.nan),
        f"{metric}_best": np.where(fit_count.to_numpy() > 0, best.reindex(index).to_numpy(dtype=float), np.nan),
        "fits_in_slice": fits.to_numpy(),
        "fraction_that_fit": fit_count.to_numpy() / size.to_numpy(),
    })
    return table


def sensitivity_plot(frame: pd.DataFrame, key: str, keys: list[str], objectives: dict[str, str],
                     cliffs: list[Cliff], path: Path) -> tuple[Path, pd.DataFrame]:
    from accelsim.report.plots import STYLE
    metrics = list(objectives)[:3]
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(1, len(metrics), figsize=(5.2 * len(metrics), 4.6), squeeze=False)
    tables = []
    for ax, metric in zip(axes[0], metrics):
        table = sensitivity(frame, key, keys, metric, objectives[metric])
        tables.append(table)
        xs = table[key].to_numpy(dtype=float)
        ax.plot(xs, table[f"{metric}_slice"], "-o", ms=3, label="others at middle value")
        ax.plot(xs, table[f"{metric}_best"], "--", color="#888888", lw=1,
                label="best over the other parameters")
        lost = xs[~table["fits_in_slice"].to_numpy(dtype=bool)]
        if len(lost):
            ax.axvspan(lost.min(), lost.max(), color="#d62728", alpha=0.12, label="does not fit")
        for c in cliffs:
            if c.key == key:
                ax.axvline(c.at, color="#d62728", lw=1.5)
                ax.annotate(c.label, (c.at, 0.5), xycoords=("data", "axes fraction"), rotation=90,
                            fontsize=9, ha="right", va="center", color="#d62728")
        ax.set_xlabel(_axis_label(key))
        ax.set_ylabel(_metric_axis(metric))
        ax.grid(alpha=0.3)
        if xs.min() > 0 and xs.max() / xs.min() >= 7:
            ax.set_xscale("log", base=2)
        values = table[f"{metric}_slice"].dropna().to_numpy(dtype=float)
        if len(values) and values.min() > 0 and values.max() / values.min() > 30:
            ax.set_yscale("log")
        _ticks(ax, "x", key)
        _ticks(ax, "y", metric)
        ax.tick_params(axis="x", labelrotation=30)
    axes[0][0].legend(fontsize=9, loc="best")
    fig.suptitle(f"Sensitivity to {key}", fontsize=13)
    with plt.rc_context(STYLE):
        fig.tight_layout()
        fig.savefig(path)
    plt.close(fig)
    merged = tables[0]
    for t in tables[1:]:
        merged = merged.merge(t.drop(columns=["fits_in_slice", "fraction_that_fit"]), on=key)
    return path, merged


_UNITS = {"rows": "PEs", "cols": "PEs"}


def _axis_label(key: str) -> str:
    return key if unit_of(key) else f"{key} ({_UNITS.get(_short(key), 'count')})"


def _header(column: str) -> str:
    """A table header: a metric's name, or a design key's last part (its unit is in each cell)."""
    return _label(column).split(" (")[0] if column in METRICS else _short(column)


def _metric_axis(metric: str) -> str:
    """A metric's axis label: its unit rides on the SI ticks, or stays in the label for plain
    counts (tokens/s, mm², $)."""
    unit = unit_of(metric)
    return _label(metric).split(" (")[0] if unit and unit not in _PLAIN_TICKS else _label(metric)


_PLAIN_TICKS = ("tokens/s", "$/Mtoken", "mm²")


def _ticks(ax, axis: str, column: str) -> None:
    """SI-prefixed ticks for a column with a unit, plain counts otherwise."""
    from accelsim.report.plots import plain_ticks, si_ticks
    unit = unit_of(column)
    if unit and unit not in _PLAIN_TICKS:
        si_ticks(ax, axis, unit)
    else:
        plain_ticks(ax, axis)


Rows = Callable[[np.ndarray], pd.DataFrame]


def write_report(frame: pd.DataFrame, summary: SweepSummary, out_dir: Path,
                 found: reading.Reading | None = None, rows: Rows | None = None) -> dict[str, Path]:
    """Every file of the report; ``frame`` holds one row per design point (results.csv), and
    ``found`` its feasible designs and front when the caller already has them.  ``rows`` gives
    whole rows by position when ``frame`` holds only ``report_columns`` (a million-point sweep
    is then never read whole: only the front and the chosen designs are)."""
    if rows is None:
        whole = frame

        def rows(positions: np.ndarray) -> pd.DataFrame:
            return whole.iloc[positions].set_axis(positions)
    if found is None:
        conditions = [Condition.parse(c, "sweep.json") for c in summary.constraints]
        found = reading.read(frame, summary.objectives, conditions)
    frame = frame.copy(deep=False)  # a new column on a view: the caller's frame is untouched, no data copied
    frame["feasible"] = found.feasible
    files: dict[str, Path] = {"results_csv": out_dir / "results.csv"}
    front = _with_feasible(rows(np.flatnonzero(found.front)), found)
    files["pareto_csv"] = out_dir / "pareto.csv"
    front.to_csv(files["pareto_csv"], index=False)
    chosen = _chosen(rows, found, front, summary)
    chosen_frame = pd.DataFrame([{"design": k, **row.to_dict()} for k, row in chosen.items()])
    files["chosen_csv"] = out_dir / "chosen.csv"
    chosen_frame.to_csv(files["chosen_csv"], index=False)
    images = []
    if len(front) and len(summary.objectives) >= 2:
        files["pareto_png"] = pareto_plot(frame, front, chosen, summary.objectives, out_dir / "pareto.png")
        images.append(("Pareto front", files["pareto_png"].name))
    cliffs = [Cliff(**c) for c in summary.cliffs]
    numeric = [k for k in summary.keys if pd.api.types.is_numeric_dtype(frame[k]) and frame[k].nunique() > 1]
    for key in numeric:
        name = f"sensitivity_{_short(key)}"
        png, table = sensitivity_plot(frame, key, numeric, summary.objectives, cliffs,
                                      out_dir / f"{name}.png")
        files[f"{name}_png"] = png
        files[f"{name}_csv"] = out_dir / f"{name}.csv"
        table.to_csv(files[f"{name}_csv"], index=False)
        images.append((f"Sensitivity to {key}", png.name))
    counts = frame["status"].value_counts().to_dict()
    shown_cols = ["design", *summary.keys, *summary.objectives,
                  *(m for m in ("power_w", "tokens_per_s_per_user") if m not in summary.objectives)]
    table = chosen_frame[[c for c in shown_cols if c in chosen_frame]] if len(chosen_frame) else chosen_frame
    context = {
        "s": summary, "counts": counts, "total": len(frame), "feasible": int(frame["feasible"].sum()),
        "front_size": len(front), "images": images, "metrics": METRICS,
        "chosen": [{c: format_cell(c, v) for c, v in row.items()} for row in table.to_dict("records")],
        "columns": list(table.columns), "headers": {c: _header(c) for c in table.columns},
        "findings": findings(frame, front, chosen, summary, cliffs),
    }
    files["markdown"] = out_dir / "report.md"
    files["markdown"].write_text(MARKDOWN.get_template("sweep.md.j2").render(**context), encoding="utf-8")
    files["html"] = out_dir / "report.html"
    files["html"].write_text(HTML.get_template("sweep.html.j2").render(**context), encoding="utf-8")
    return files


def _with_feasible(part: pd.DataFrame, found: reading.Reading) -> pd.DataFrame:
    """Whole rows with the report's ``feasible`` column added last (positions as index)."""
    part = part.copy(deep=False)
    part["feasible"] = found.feasible[np.asarray(part.index, dtype=np.int64)] if len(part) else []
    return part


def _chosen(rows: Rows, found: reading.Reading, front: pd.DataFrame,
            summary: SweepSummary) -> dict[str, pd.Series]:
    chosen: dict[str, pd.Series] = {}
    # Picked from the front by the rule the CLI prints (``reading.pick``), so a tie in the picked
    # metric goes to a design nothing dominates and a metric never reached (NaN) is never best.
    position = reading.pick(found, summary.pick_metric, summary.pick_sense)
    if position is None:
        return chosen
    chosen[f"pick: {summary.pick_sense} {summary.pick_metric}"] = \
        _with_feasible(rows(np.array([position])), found).iloc[0]
    for metric, sense in summary.objectives.items() if len(front) else ():
        row = front.iloc[reading.best(front[metric].to_numpy(dtype=float), sense)]
        chosen.setdefault(f"best {metric}", row)
    return chosen


def findings(frame, front, chosen, summary, cliffs) -> list[str]:
    lines = []
    n_fit = int((frame["status"] == STATUS_OK).sum())
    lines.append(f"{len(frame)} designs evaluated; {n_fit} run the model, {int(frame['feasible'].sum())} "
                 f"also meet the constraints ({', '.join(summary.constraints) or 'none'}); "
                 f"{len(front)} are Pareto-optimal.")
    for c in cliffs:
        lines.append(f"Cliff at {c.key} = {format_cell(c.key, c.at)}: {c.label}.")
    for name, row in chosen.items():
        parts = ", ".join(f"{_short(k)} {format_cell(k, row[k])}" for k in summary.keys
                          if isinstance(row[k], float))
        metric_parts = ", ".join(f"{_header(m)} {format_cell(m, row[m])}" for m in summary.objectives)
        lines.append(f"{name}: {parts} -> {metric_parts}.")
    if not chosen:
        lines.append("No design meets every constraint and target.")
    return lines


def cliffs_from(space) -> list[dict]:
    return [{"key": a.key, "at": to_number(a.at), "label": a.label} for a in space.spec.annotations]


def load_frame(path: Path, columns: list[str] | None = None) -> pd.DataFrame:
    """A sweep's results from results.parquet (typed columns) or results.csv; only ``columns``
    (in file order) when given."""
    if columns is not None:
        present = _file_columns(path)
        missing = [c for c in columns if c not in present]
        if missing:
            raise AccelsimError(f"no column {', '.join(map(repr, missing))} (the sweep's parameters and "
                                f"metrics that sweep.json names); rerun `accelsim sweep` to rewrite it",
                                source=str(path))
        wanted = set(columns)
        columns = [c for c in present if c in wanted]
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq
        # A column at a time, each Arrow column freed once converted: the table and the frame
        # are never both held whole.
        with pq.ParquetFile(path, pre_buffer=False) as file:
            names = file.schema_arrow.names if columns is None else columns
            frame = pd.DataFrame(index=pd.RangeIndex(file.metadata.num_rows))
            for c in names:  # one block per column, never consolidated into a copy
                frame[c] = _as_frame(file.read(columns=[c], use_threads=False), self_destruct=True)[c]
            return frame
    # Ids, status and reason are text: a hex id such as "1234e56789012345" must not read as a number.
    return pd.read_csv(path, keep_default_na=True, dtype=_CSV_TEXT, usecols=columns)


_CSV_TEXT = {"point_id": str, "status": str, "reason": str}

# Rows read at a time when fetching whole rows (the front, the chosen designs) from a sweep file.
BATCH_ROWS = 65_536


def report_columns(summary: SweepSummary) -> list[str]:
    """The columns the report reads for every design (status, parameters, objectives, the
    constrained and picked metrics); whole rows are fetched only for the designs it lists."""
    conditions = [Condition.parse(c, "sweep.json").metric for c in summary.constraints]
    return list(dict.fromkeys(["status", *summary.keys, *summary.objectives, *conditions, summary.pick_metric]))


def rows_at(path: Path, positions: np.ndarray, batch_rows: int = BATCH_ROWS) -> pd.DataFrame:
    """Whole rows at ``positions`` (0-based file order; repeats allowed) of a sweep file, in
    the order asked and indexed by position, read a batch at a time so the file is never held
    whole (a Parquet file: only the row groups that hold a wanted row; a CSV: ``batch_rows``
    rows at a time)."""
    positions = np.asarray(positions, dtype=np.int64)
    wanted = np.unique(positions)
    parts = []
    for inside, part in _wanted_rows(path, batch_rows, wanted):
        part.index = pd.Index(inside)
        parts.append(part)
    if parts:
        found = pd.concat(parts)
    else:
        found = _as_frame(_empty_table(path)) if path.suffix == ".parquet" else \
            pd.read_csv(path, dtype=_CSV_TEXT, nrows=batch_rows).iloc[:0]  # no rows: the columns and types
    return found.loc[positions]


def _wanted_rows(path: Path, batch_rows: int, wanted: np.ndarray):
    """(positions, rows) for each batch of the file that holds a ``wanted`` position: only those
    rows are converted (a Parquet row group is cut down before it becomes a frame)."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq
        # pre_buffer off: only the row group being read is held.
        with pq.ParquetFile(path, pre_buffer=False) as file:
            start = 0
            for group in range(file.metadata.num_row_groups):
                size = file.metadata.row_group(group).num_rows
                inside = wanted[(wanted >= start) & (wanted < start + size)]
                if len(inside):
                    yield inside, _as_frame(file.read_row_group(group, use_threads=False).take(inside - start))
                start += size
        return
    start = 0
    with pd.read_csv(path, keep_default_na=True, dtype=_CSV_TEXT, chunksize=batch_rows) as chunks:
        for chunk in chunks:
            inside = wanted[(wanted >= start) & (wanted < start + len(chunk))]
            if len(inside):
                yield inside, chunk.iloc[inside - start]
            start += len(chunk)


def _empty_table(path: Path):
    import pyarrow.parquet as pq
    return pq.read_schema(path).empty_table()


def _as_frame(data, self_destruct: bool = False) -> pd.DataFrame:
    """An Arrow table or batch as ``pd.read_parquet`` converts a whole table (the same column
    types)."""
    import pyarrow as pa
    table = data if isinstance(data, pa.Table) else pa.Table.from_batches([data])
    del data  # with self_destruct, the caller's last reference is the table converted here
    return table.to_pandas(types_mapper={pa.string(): pd.StringDtype(na_value=np.nan)}.get,
                           split_blocks=self_destruct, self_destruct=self_destruct)


def _file_columns(path: Path) -> list[str]:
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq
        return list(pq.read_schema(path).names)
    return list(pd.read_csv(path, nrows=0).columns)
