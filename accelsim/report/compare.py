"""The comparison report: one table, plots, Markdown + HTML, and CSV of every number shown."""
from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from pathlib import Path

import jinja2
import pandas as pd

from accelsim import hardware
from accelsim.config.units import format_plain, format_rate, format_si
from accelsim.dtypes import DTYPES
from accelsim.hardware.spec import HardwareBase
from accelsim.report import plots
from accelsim.report.text import op_table
from accelsim.sim.result import Refusal, Result, precision_note
from accelsim.workload import Workload

TEMPLATES = jinja2.Environment(
    loader=jinja2.PackageLoader("accelsim.report", "templates"),
    autoescape=jinja2.select_autoescape(["html", "html.j2"]), trim_blocks=True, lstrip_blocks=True)


OFF_CHIP_LEVELS = ("hbm", "dram")


def roof_of(chip: HardwareBase) -> plots.Roof:
    """The memory holding the chip's weights and KV cache, for its roofline (each op brings its
    own compute peak, that of its format)."""
    outer = hardware.backend(chip).main_memory(chip)
    levels = getattr(chip, "memory")  # every kind's spec has its memory levels by name
    level = next(name for name, held in levels if held is outer)
    matrix = {d: chip.matrix_peak(d) for d in DTYPES}  # a format without units falls back to a wider one
    return plots.Roof(level, outer.bandwidth, level not in OFF_CHIP_LEVELS, matrix, chip.compute.vector)


def capacity_of(chip: HardwareBase) -> tuple[str, float]:
    """The memory holding the KV cache and the bytes one chip's share of it holds (the
    footprint plot's mark)."""
    roof = roof_of(chip)
    return roof.level, hardware.backend(chip).main_memory(chip).capacity


def summary_frame(results: list[Result], refusals: list[Refusal]) -> pd.DataFrame:
    rows = [{"model": r.model, "hw": r.hw, "kind": r.hw_kind, **workload_columns(r.workload), **dtype_columns(r),
             "chips": r.chips, "layout": r.layout, "status": "ok", "latency_s": r.latency_s,
             "tokens_per_s": r.tokens_per_s, "joules_per_token": r.joules_per_token,
             "power_w": r.power_w, "area_mm2": r.area_mm2, "usd_per_mtoken": r.usd_per_mtoken,
             "weight_bytes": r.footprint_bytes.get("weight", 0.0),
             "kv_bytes": r.footprint_bytes.get("kv_cache", 0.0),
             "weight_traffic_bytes": sum(c.bytes.get("hbm", 0.0) + c.bytes.get("dram", 0.0)
                                         for c in r.ops if c.kind == "matmul") * r.groups,
             "dominant_bound": r.by_kind()["bound"].iloc[0],
             "trust": r.trust.short if r.trust is not None else ""} for r in results]
    rows += [{"hw": f.hw, **(workload_columns(f.workload) if f.workload else {}),
              "status": f"cannot run: {f.reason}"} for f in refusals]
    return pd.DataFrame(rows)


def workload_columns(workload: dict) -> dict[str, object]:
    """phase, batch and the one size the phase reads (prompt or context) of a row."""
    size = "prompt" if workload["phase"] == "prefill" else "context"
    return {"phase": workload["phase"], "batch": workload["batch"], size: workload[size]}


def dtype_columns(result: Result) -> dict[str, str]:
    """weight_dtype / act_dtype / kv_dtype of one row ('' where the model keeps no KV cache)."""
    return {"weight_dtype": result.dtypes.get("weight", ""), "act_dtype": result.dtypes.get("activation", ""),
            "kv_dtype": result.dtypes.get("kv", "")}


def _workload_cell(row: pd.Series) -> str:
    size = "prompt" if row.get("phase") == "prefill" else "context"
    value = row.get(size)
    return f"batch {int(row['batch'])}, {size} {int(value):,}" if pd.notna(value) else ""


def formats_label(row: pd.Series) -> str:
    """'int4 / bf16 / bf16' (weights / activations / KV, under a header that says so) from a
    summary row's dtype columns; '-' for a cache the model does not keep."""
    if not isinstance(row.get("weight_dtype"), str) or not row.get("weight_dtype"):
        return ""
    return " / ".join(row.get(col) if isinstance(row.get(col), str) and row.get(col) else "-"
                      for col in ("weight_dtype", "act_dtype", "kv_dtype"))


FORMATS_HEADER = "formats w / a / kv"


# column -> (header, formatter): every number with its SI-prefixed unit, never in exponent form
_SHOWN: dict[str, tuple[str, Callable[[float], str]]] = {
    "latency_s": ("step latency", lambda v: format_si(v, "s")),
    "tokens_per_s": ("throughput", lambda v: format_rate(v, "tokens/s")),
    "joules_per_token": ("energy/token", lambda v: format_si(v, "J")),
    "power_w": ("avg power", lambda v: format_si(v, "W")),
    "area_mm2": ("die area", lambda v: f"{v:,.0f} mm²"),
    "usd_per_mtoken": ("$/Mtoken", lambda v: f"${format_plain(v)}"),
}


def _display(frame: pd.DataFrame, reasons_inline: bool = False) -> pd.DataFrame:
    """The summary as a person reads it: formats and system beside each chip, units in every
    cell; a refusal's reason stays in the status cell only when asked (the reports list them
    below the table so one long reason does not stretch a row to 25 lines)."""
    shown = pd.DataFrame({"hw": frame["hw"]})
    if "phase" in frame and len(frame[["phase", "batch"] + [c for c in ("prompt", "context") if c in frame]]
                                .drop_duplicates()) > 1:
        shown["workload"] = frame.apply(_workload_cell, axis=1)
    if "weight_dtype" in frame:
        shown[FORMATS_HEADER] = frame.apply(formats_label, axis=1)
    if "layout" in frame:
        shown["system"] = frame["layout"].fillna("")
    shown["status"] = frame["status"].map(
        lambda v: v if v == "ok" or reasons_inline else "cannot run (below)")
    for col, (header, fmt) in _SHOWN.items():
        if col in frame:
            shown[header] = frame[col].map(lambda v, f=fmt: f(v) if pd.notna(v) else "")
    return shown  # the dominant bound per chip: the time breakdown and op tables, and summary.csv


def write_report(results: list[Result], refusals: list[Refusal], chips: Sequence[HardwareBase],
                 out_dir: Path, title: str, workload_text: str) -> dict[str, Path]:
    """Every file of a comparison.  ``results`` may hold several workload points per chip (a
    list-valued --batch/--context/--prompt): the table has a row each, the per-op views show
    the first point and the curves show them all."""
    out_dir.mkdir(parents=True, exist_ok=True)
    frame = summary_frame(results, refusals)
    files = {"summary_csv": out_dir / "summary.csv", "ops_csv": out_dir / "ops.csv"}
    frame.to_csv(files["summary_csv"], index=False)
    first = [r for r in results if r.workload == results[0].workload] if results else []
    ops = pd.concat([r.ops_frame().assign(hw=r.hw, **workload_columns(r.workload)) for r in results],
                    ignore_index=True) if results else pd.DataFrame()
    ops.to_csv(files["ops_csv"], index=False)
    files.update(_figures(results, first, chips, out_dir))
    precision = precision_note(results)
    context = {
        "title": title + (" (unlike precisions)" if precision else ""), "precision": precision,
        "workload": workload_text, "table": _display(frame),
        "findings": findings(first), "refusals": refusals,
        "op_tables": {r.hw: op_table(r, top=8).to_html(index=False, border=0) for r in first},
        "first_point": workload_text_of(first[0]) if first and len(first) < len(results) else "",
        "images": {k: v.name for k, v in files.items() if k.endswith("_png")},
    }
    files["markdown"] = out_dir / "report.md"
    files["markdown"].write_text(TEMPLATES.get_template("compare.md.j2").render(
        **context, markdown_table=_display(frame).to_markdown(index=False) if _has_tabulate()
        else _display(frame).to_string(index=False)), encoding="utf-8")
    files["html"] = out_dir / "report.html"
    files["html"].write_text(TEMPLATES.get_template("compare.html.j2").render(
        **context, html_table=_display(frame).to_html(index=False, escape=True, border=0)),
        encoding="utf-8")
    return files


def workload_text_of(result: Result) -> str:
    return Workload(**result.workload).describe()


def _figures(results: list[Result], first: list[Result], chips: Sequence[HardwareBase],
             out_dir: Path) -> dict[str, Path]:
    """The plots, by file key: per-op views of the first point, curves over every point."""
    if not results:
        return {}
    files = {
        "time_breakdown_png": plots.time_breakdown(first, out_dir / "time_breakdown.png"),
        "roofline_png": plots.roofline(first, {c.name: roof_of(c) for c in chips}, out_dir / "roofline.png"),
        "memory_footprint_png": plots.memory_footprint(first, {c.name: capacity_of(c) for c in chips},
                                                       out_dir / "memory_footprint.png"),
    }
    batches = {r.workload["batch"] for r in results}
    size = "prompt" if results[0].workload["phase"] == "prefill" else "context"
    sizes = {r.workload[size] for r in results}
    if len(batches) > 1:
        files["throughput_latency_png"] = plots.throughput_latency(results, out_dir / "throughput_latency.png")
    if len(sizes) > 1:
        name = "ttft_prompt" if size == "prompt" else "latency_context"
        files[f"{name}_png"] = plots.latency_size(results, out_dir / f"{name}.png")
    return files


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
    except ImportError:
        return False
    return True


def findings(results: list[Result]) -> list[str]:
    """Plain-language reading of the numbers: who is fastest, cheapest, and why."""
    if not results:
        return []
    lines = []
    fastest = max(results, key=lambda r: r.tokens_per_s)
    frugal = min(results, key=lambda r: r.joules_per_token)
    lines.append(f"Highest throughput: {fastest.hw} at {format_rate(fastest.tokens_per_s, 'tokens/s')}.")
    lines.append(f"Lowest energy: {frugal.hw} at {format_si(frugal.joules_per_token, 'J')} per token.")
    for r in results:
        kinds = r.by_kind()
        top = kinds.index[0]
        offchip = sum(c.bytes.get("hbm", 0.0) + c.bytes.get("dram", 0.0) for c in r.ops) * r.groups
        weight_offchip = sum(c.bytes.get("hbm", 0.0) + c.bytes.get("dram", 0.0)
                             for c in r.ops if c.kind == "matmul") * r.groups
        lines.append(
            f"{r.hw}: {kinds['time_s'].iloc[0] / kinds['time_s'].sum():.0%} of op time in {top} "
            f"ops, mostly {kinds['regime'].iloc[0]}; {format_si(offchip, 'B')} cross the "
            f"off-chip interface per step ({format_si(weight_offchip, 'B')} for matmul operands).")
    return [html.unescape(line) for line in lines]
