"""The comparison report: one table, plots, Markdown + HTML, and CSV of every number shown."""
from __future__ import annotations

import html
from pathlib import Path

import jinja2
import pandas as pd

from accelsim import hardware
from accelsim.hardware.spec import HardwareBase
from accelsim.report import plots
from accelsim.sim.result import Refusal, Result
from accelsim.units import format_si

TEMPLATES = jinja2.Environment(
    loader=jinja2.PackageLoader("accelsim.report", "templates"),
    autoescape=jinja2.select_autoescape(["html", "html.j2"]), trim_blocks=True, lstrip_blocks=True)


def roof_of(chip: HardwareBase) -> tuple[float, float]:
    """(peak matrix FLOP/s, bandwidth of the memory holding weights and KV) for the roofline plot."""
    outer = hardware.backend(chip).main_memory(chip)
    return max(chip.compute.matrix.values()), outer.bandwidth


def summary_frame(results: list[Result], refusals: list[Refusal]) -> pd.DataFrame:
    rows = [{"hw": r.hw, "kind": r.hw_kind, "status": "ok", "latency_s": r.latency_s,
             "tokens_per_s": r.tokens_per_s, "joules_per_token": r.joules_per_token,
             "power_w": r.power_w, "area_mm2": r.area_mm2, "usd_per_mtoken": r.usd_per_mtoken,
             "weight_bytes": r.footprint_bytes.get("weight", 0.0),
             "kv_bytes": r.footprint_bytes.get("kv_cache", 0.0),
             "weight_traffic_bytes": sum(c.bytes.get("hbm", 0.0) + c.bytes.get("dram", 0.0)
                                         for c in r.ops if c.kind == "matmul") * r.groups,
             "dominant_bound": r.by_kind()["bound"].iloc[0],
             "trust": r.trust.short if r.trust is not None else ""} for r in results]
    rows += [{"hw": f.hw, "status": f"cannot run: {f.reason}"} for f in refusals]
    return pd.DataFrame(rows)


def _display(frame: pd.DataFrame) -> pd.DataFrame:
    shown = frame.copy()
    fmt = {"latency_s": ("s", "latency"), "power_w": ("W", "avg power"),
           "weight_bytes": ("B", "weights"), "kv_bytes": ("B", "KV cache"),
           "weight_traffic_bytes": ("B", "off-chip matmul bytes")}
    for col, (unit, _) in fmt.items():
        if col in shown:
            shown[col] = shown[col].map(lambda v, u=unit: format_si(v, u) if pd.notna(v) else "")
    if "tokens_per_s" in shown:
        shown["tokens_per_s"] = shown["tokens_per_s"].map(lambda v: f"{v:,.1f}" if pd.notna(v) else "")
        shown["joules_per_token"] = shown["joules_per_token"].map(lambda v: f"{v:.4g}" if pd.notna(v) else "")
    for col in ("area_mm2", "usd_per_mtoken"):
        if col in shown:
            shown[col] = shown[col].map(lambda v: f"{v:.4g}" if pd.notna(v) else "")
    return shown.rename(columns={c: name for c, (_, name) in fmt.items()}).fillna("")


def write_report(results: list[Result], refusals: list[Refusal], roofs: dict[str, tuple[float, float]],
                 out_dir: Path, title: str, workload_text: str) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    frame = summary_frame(results, refusals)
    files = {"summary_csv": out_dir / "summary.csv", "ops_csv": out_dir / "ops.csv"}
    frame.to_csv(files["summary_csv"], index=False)
    ops = pd.concat([r.ops_frame().assign(hw=r.hw) for r in results], ignore_index=True) \
        if results else pd.DataFrame()
    ops.to_csv(files["ops_csv"], index=False)
    if results:
        files["time_breakdown_png"] = plots.time_breakdown(results, out_dir / "time_breakdown.png")
        files["roofline_png"] = plots.roofline(results, roofs, out_dir / "roofline.png")
    context = {
        "title": title, "workload": workload_text, "table": _display(frame),
        "findings": findings(results), "refusals": refusals,
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
    lines.append(f"Highest throughput: {fastest.hw} at {fastest.tokens_per_s:,.1f} tokens/s.")
    lines.append(f"Lowest energy: {frugal.hw} at {frugal.joules_per_token:.4g} J/token.")
    for r in results:
        kinds = r.by_kind()
        top = kinds.index[0]
        offchip = sum(c.bytes.get("hbm", 0.0) + c.bytes.get("dram", 0.0) for c in r.ops) * r.groups
        weight_offchip = sum(c.bytes.get("hbm", 0.0) + c.bytes.get("dram", 0.0)
                             for c in r.ops if c.kind == "matmul") * r.groups
        lines.append(
            f"{r.hw}: {kinds['time_s'].iloc[0] / kinds['time_s'].sum():.0%} of op time in {top} "
            f"ops, mostly {kinds['bound'].iloc[0]}-bound; {format_si(offchip, 'B')} cross the "
            f"off-chip interface per step ({format_si(weight_offchip, 'B')} for matmul operands).")
    return [html.unescape(line) for line in lines]
