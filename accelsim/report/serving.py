"""The serving report: latency percentiles, the latency-throughput curve, queue over time,
Markdown + HTML, CSV of every number shown, and a Perfetto trace of the serving timeline."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

from accelsim.config.units import format_si
from accelsim.report.cells import format_cell
from accelsim.report.compare import TEMPLATES
from accelsim.report.plots import STYLE, plain_ticks, si_ticks
from accelsim.report.speculative import draft_label, speculation_line
from accelsim.report.trace import Counter, timeline_plot, timeline_trace, write_trace
from accelsim.sim.load import Capacity
from accelsim.sim.serving import ServeResult
from accelsim.sim.timeline import Interval, Timeline

# the curve table as shown: column -> header (each cell carries its unit)
CURVE_COLUMNS = {"throughput_tokens_per_s": "throughput",
                 "throughput_tokens_per_s_per_chip": "throughput per chip",
                 "tokens_per_s_per_user": "per user",
                 "goodput_req_per_s": "goodput", "ttft_p50_s": "TTFT p50", "ttft_p99_s": "TTFT p99",
                 "tpot_p50_s": "TPOT p50", "tpot_p99_s": "TPOT p99", "e2e_p99_s": "end-to-end p99",
                 "joules_per_token": "energy/token"}


def curve_frame(results: list[ServeResult]) -> pd.DataFrame:
    rows = []
    for r in results:
        s = r.summary()
        rows.append({"load": r.load["kind"], "load_value": r.load["value"], "rate_req_per_s": r.rate,
                     "throughput_tokens_per_s": s["throughput_tokens_per_s"],
                     "throughput_tokens_per_s_per_chip": s["throughput_tokens_per_s_per_chip"],
                     "tokens_per_s_per_user": s["tokens_per_s_per_user"],
                     "goodput_req_per_s": s["goodput_requests_per_s"],
                     **{f"ttft_{k}_s": v for k, v in s["ttft_s"].items()},
                     **{f"tpot_{k}_s": v for k, v in s["tpot_s"].items()},
                     **{f"e2e_{k}_s": v for k, v in s["e2e_s"].items()},
                     "joules_per_token": s["joules_per_token"], "max_running": s["max_running"],
                     "preemptions": s["preemptions"], **kv_columns(s),
                     **({"spec_tokens_per_sequence_step": r.speculation.tokens_per_sequence_step,
                         "spec_draft_share": r.speculation.draft_share} if r.speculation else {})})
    return pd.DataFrame(rows).sort_values("load_value")


def kv_columns(s: dict) -> dict[str, float]:
    """Curve CSV columns of the prefix cache and the host tier, for runs that had them on."""
    cols: dict[str, float] = {}
    if "prefix_cache" in s:
        cols |= {"token_hit_rate": s["prefix_cache"]["token_hit_rate"],
                 "request_hit_rate": s["prefix_cache"]["request_hit_rate"]}
    if "kv_offload" in s:
        cols |= {"bytes_to_host": s["kv_offload"]["bytes_to_host"],
                 "bytes_from_host": s["kv_offload"]["bytes_from_host"],
                 "host_peak_bytes": s["kv_offload"]["host_peak_bytes"]}
    return cols


def load_label(kind: str, value: float) -> str:
    return {"rate": f"{value:g}/s", "concurrency": f"N={value:g}", "offline": "offline"}[kind]


def requests_frame(result: ServeResult) -> pd.DataFrame:
    return pd.DataFrame([vars(r) for r in result.requests])


def steps_frame(result: ServeResult) -> pd.DataFrame:
    return pd.DataFrame([{**vars(s), "duration_s": s.end_s - s.start_s} for s in result.steps])


def latency_throughput_plot(curve: pd.DataFrame, path: Path, slo_ttft: float, slo_tpot: float) -> Path:
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    for ax, metric, slo, label in ((axes[0], "ttft", slo_ttft, "time to first token"),
                                   (axes[1], "tpot", slo_tpot, "time per output token")):
        for q, style in (("p50", "o-"), ("p90", "s--"), ("p99", "^:")):
            ax.plot(curve["throughput_tokens_per_s"], curve[f"{metric}_{q}_s"], style, label=q)
        ax.axhline(slo, color="red", lw=0.8, label="SLO")
        for _, row in curve.iterrows():
            ax.annotate(load_label(row["load"], row["load_value"]), (row["throughput_tokens_per_s"],
                        row[f"{metric}_p50_s"]), fontsize=9, textcoords="offset points", xytext=(3, 3))
        ax.set_xlabel("throughput (output tokens/s)")
        ax.set_ylabel(label)
        ax.set_yscale("log")
        si_ticks(ax, "y", "s")  # '20 ms', not '2×10¹'
        plain_ticks(ax, "x")
        ax.grid(which="major", alpha=0.25)
        ax.legend(fontsize=9)
    fig.suptitle("Latency vs throughput over the offered loads (labels: rate or concurrency)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def frontier_plot(curve: pd.DataFrame, path: Path) -> Path:
    """Throughput per chip against tokens/s per user (median 1/TPOT) across the loads: the
    trade-off InferenceX plots, interactivity bought with throughput."""
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(6.5, 4.2))
    ax.plot(curve["tokens_per_s_per_user"], curve["throughput_tokens_per_s_per_chip"], "o-")
    for _, row in curve.iterrows():
        ax.annotate(load_label(row["load"], row["load_value"]),
                    (row["tokens_per_s_per_user"], row["throughput_tokens_per_s_per_chip"]),
                    fontsize=9, textcoords="offset points", xytext=(3, 3))
    ax.set_xlabel("tokens/s per user (median 1 / TPOT)")
    ax.set_ylabel("output tokens/s per chip")
    plain_ticks(ax, "x")
    plain_ticks(ax, "y")
    ax.grid(alpha=0.25)
    ax.set_title("Throughput per chip vs interactivity")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def queue_plot(result: ServeResult, path: Path) -> Path:
    steps = steps_frame(result)
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(11, 4))
    if not steps.empty:
        ax.step(steps["start_s"], steps["waiting"], where="post", label="waiting requests")
        ax.step(steps["start_s"], steps["running"], where="post", label="running requests")
    si_ticks(ax, "x", "s")
    ax.set_xlabel("simulated time")
    ax.set_ylabel("requests")
    ax.set_title(f"Queue over time at {result.rate:g} requests/s ({result.scheduler} batching)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def serving_trace(result: ServeResult, path: Path, title: str) -> Path:
    """Every step as a complete event on the chip's track; queue, running requests and KV
    blocks in use as counters."""
    intervals = [Interval("chip", s.label or "idle", "prefill" if s.prefill_tokens else "decode",
                          s.start_s, s.end_s) for s in result.steps]
    counters = [Counter(name, tuple((s.start_s, float(getattr(s, attr))) for s in result.steps))
                for name, attr in (("waiting", "waiting"), ("running", "running"),
                                   ("kv blocks used", "kv_blocks_used"))]
    return write_trace(path, intervals, counters, {"title": title, **result.summary()})


def findings(main: ServeResult, curve: pd.DataFrame, capacity: Capacity | None = None) -> list[str]:
    s = main.summary()
    lines = [
        (f"At {load_label(main.load['kind'], main.load['value'])}: TTFT p50 {s['ttft_s']['p50'] * 1e3:.1f} ms / p99 "
        f"{s['ttft_s']['p99'] * 1e3:.1f} ms, TPOT p50 {s['tpot_s']['p50'] * 1e3:.2f} ms / p99 "
        f"{s['tpot_s']['p99'] * 1e3:.2f} ms, {s['throughput_tokens_per_s']:,.0f} output tokens/s, "
        f"{format_si(s['joules_per_token'], 'J')} per token."),
        (f"Goodput {s['goodput_requests_per_s']:.3g} requests/s met both SLOs (TTFT <= "
        f"{s['slo']['ttft_s']:g} s, TPOT <= {s['slo']['tpot_s']:g} s) of "
        f"{s['throughput_requests_per_s']:.3g} served."),
        (f"KV cache: {s['kv_blocks']:,} blocks of {s['block_size']} tokens; up to {s['max_running']} "
        f"requests ran at once; {s['preemptions']} preemption(s)."),
    ] + kv_findings(s)
    if main.speculation is not None:
        lines.append(f"Speculative decoding, draft {draft_label(main.speculation.draft)}: "
                     f"{speculation_line(main.speculation)}.")
    ok = curve[(curve["ttft_p99_s"] <= main.config.slo_ttft_s) & (curve["tpot_p99_s"] <= main.config.slo_tpot_s)]
    if not ok.empty:
        best = ok.iloc[-1]
        lines.append(f"Highest offered load on the curve meeting both SLOs at p99: "
                     f"{load_label(best['load'], best['load_value'])} "
                     f"({best['throughput_tokens_per_s']:,.0f} tokens/s).")
    else:
        lines.append("No offered load on the curve met both SLOs at p99.")
    if capacity is not None:
        c = capacity.summary()
        lines.append(f"SLO capacity ({c['percentile']} TTFT <= {c['slo']['ttft_s']:g} s and TPOT <= "
                     f"{c['slo']['tpot_s']:g} s): {load_label(c['load'], c['value'])}, "
                     f"{c['at_capacity']['throughput_tokens_per_s']:,.0f} tokens/s; "
                     f"{load_label(c['load'], c['above']['value'])} misses it "
                     f"({c['probes']} runs searched).")
    return lines


def kv_findings(s: dict) -> list[str]:
    """Prefix cache hit rates and host-tier traffic, where the run had them on."""
    lines = []
    if "prefix_cache" in s:
        p = s["prefix_cache"]
        lines.append(f"Prefix cache: {p['token_hit_rate']:.1%} of the prompt tokens looked up were cached "
                     f"(token hit rate), {p['request_hit_rate']:.1%} of the prefills hit (request hit rate); "
                     f"{p['hit_tokens']:,} prompt tokens were not prefilled.")
    if "kv_offload" in s:
        o = s["kv_offload"]
        lines.append(f"KV offload to host memory: {format_si(o['bytes_to_host'], 'B')} moved to the host and "
                     f"{format_si(o['bytes_from_host'], 'B')} back over a {format_si(o['link_bandwidth_bytes_per_s'], 'B/s')} "
                     f"link; host tier peak {format_si(o['host_peak_bytes'], 'B')} of "
                     f"{format_si(o['host_capacity_bytes'], 'B')}; {o['recomputed_tokens']:,} tokens recomputed "
                     f"after preemptions.")
    return lines


def write_report(main: ServeResult, sweep: list[ServeResult], out_dir: Path, title: str,
                 setup: str, step: Timeline | None = None, step_label: str = "",
                 capacity: Capacity | None = None, pools: list[str] | None = None) -> dict[str, Path]:
    """``step``: an engine timeline of one typical decode step, drawn and exported as well.
    ``pools``: a disaggregated run's per-pool lines (``DisaggResult.findings``), their own section."""
    out_dir.mkdir(parents=True, exist_ok=True)
    curve = curve_frame(sweep)
    files = {"curve_csv": out_dir / "curve.csv", "requests_csv": out_dir / "requests.csv",
             "steps_csv": out_dir / "steps.csv"}
    curve.to_csv(files["curve_csv"], index=False)
    requests_frame(main).to_csv(files["requests_csv"], index=False)
    steps_frame(main).to_csv(files["steps_csv"], index=False)
    files["latency_throughput_png"] = latency_throughput_plot(
        curve, out_dir / "latency_throughput.png", main.config.slo_ttft_s, main.config.slo_tpot_s)
    files["frontier_png"] = frontier_plot(curve, out_dir / "frontier.png")
    files["queue_png"] = queue_plot(main, out_dir / "queue.png")
    files["trace"] = serving_trace(main, out_dir / "trace.json", title)
    if step is not None:
        files["step_timeline_png"] = timeline_plot(step, out_dir / "step_timeline.png", step_label)
        files["step_trace"] = timeline_trace(step, out_dir / "step_trace.json", step_label)
    s = main.summary()
    table = pd.DataFrame([{"metric": m, **{q: format_si(s[k][q], "s") for q in ("p50", "p90", "p99", "mean")}}
                          for m, k in (("TTFT", "ttft_s"), ("TPOT", "tpot_s"), ("end-to-end", "e2e_s"))])
    shown_curve = pd.DataFrame({"load": [load_label(k, v) for k, v in zip(curve["load"], curve["load_value"])],
                                **{header: [format_cell(col, v) for v in curve[col]]
                                   for col, header in CURVE_COLUMNS.items()}})
    context = {"title": title, "setup": setup, "findings": findings(main, curve, capacity),
               "images": {k: v.name for k, v in files.items() if k.endswith("_png")},
               "trace": files["trace"].name,
               "step_trace": files["step_trace"].name if "step_trace" in files else None,
               "step_label": step_label, "pools": pools or []}
    files["markdown"] = out_dir / "report.md"
    files["markdown"].write_text(TEMPLATES.get_template("serve.md.j2").render(
        **context, latency_table=table.to_markdown(index=False),
        curve_table=shown_curve.to_markdown(index=False)), encoding="utf-8")
    files["html"] = out_dir / "report.html"
    files["html"].write_text(TEMPLATES.get_template("serve.html.j2").render(
        **context, latency_table=table.to_html(index=False, border=0),
        curve_table=shown_curve.to_html(index=False, border=0)),
        encoding="utf-8")
    return files
