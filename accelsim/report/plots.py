"""Matplotlib figures for reports.  Every axis carries its unit with an SI prefix on its ticks
(never 6×10¹ or 1e-05), log scales where values span decades, fonts readable at page width."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.ticker import FuncFormatter, LogLocator

from accelsim.config.units import format_plain, format_si
from accelsim.hardware.base import OpCost
from accelsim.sim.result import Result

KIND_COLOURS = {"matmul": "#1f77b4", "attention": "#ff7f0e", "elementwise": "#2ca02c",
                "norm": "#d62728", "embedding": "#9467bd", "scan": "#8c564b", "conv": "#e377c2",
                "collective": "#7f7f7f", "host": "#bcbd22"}
FOOTPRINT_COLOURS = {"weight": "#1f77b4", "kv_cache": "#ff7f0e", "activation": "#2ca02c",
                     "state": "#8c564b"}
FOOTPRINT_LABELS = {"weight": "weights", "kv_cache": "KV cache", "activation": "activations (largest op)",
                    "state": "recurrent state"}
# Values spanning more than this ratio get a log axis.
DECADES = 30.0

STYLE: Any = {"font.size": 11, "axes.titlesize": 12, "axes.labelsize": 11, "xtick.labelsize": 10,
         "ytick.labelsize": 10, "legend.fontsize": 9, "figure.dpi": 110, "savefig.dpi": 110}


@dataclass(frozen=True)
class Roof:
    """The memory a chip's roofline is drawn against: its name (``hbm``, ``sram``, ...), its
    bandwidth, and whether it is on the die (an SRAM-resident chip has no off-chip bytes)."""

    level: str
    bandwidth: float
    on_chip: bool
    matrix: dict[str, float]  # the chip's matrix peak for each format (narrower ones fall back)
    vector: float             # its vector unit's peak

    def unit_of(self, cost: OpCost) -> str:
        """'vector' for an op that ran on the vector unit, else its format."""
        return "vector" if abs(cost.peak_flops - self.vector) <= 1e-9 * self.vector else cost.dtype

    def peak(self, unit: str) -> float:
        return self.vector if unit == "vector" else self.matrix[unit]


def _figure(width: float, height: float):
    with plt.rc_context(STYLE):
        return plt.subplots(figsize=(width, height))


def _save(fig, path: Path) -> Path:
    with plt.rc_context(STYLE):
        fig.tight_layout()
        fig.savefig(path)
    plt.close(fig)
    return path


def si_ticks(ax: Axes, axis: str, unit: str) -> None:
    """Tick labels with SI prefixes ('10 ms', '1 TB/s'); on a log axis, one label per decade."""
    formatter = FuncFormatter(lambda v, _pos: format_si(v, unit) if v > 0 else "0")
    target = ax.xaxis if axis == "x" else ax.yaxis
    target.set_major_formatter(formatter)
    if (ax.get_xscale() if axis == "x" else ax.get_yscale()) == "log":
        low, high = ax.get_xlim() if axis == "x" else ax.get_ylim()
        # Under two decades, label 1-2-5 steps so the axis has more than one or two numbers.
        subs = (1.0, 2.0, 5.0) if 0 < low and high < 100 * low else (1.0,)  # no division: low may underflow
        target.set_major_locator(LogLocator(base=10, subs=subs, numticks=12))
        target.set_minor_formatter(FuncFormatter(lambda _v, _p: ""))


def plain_ticks(ax: Axes, axis: str) -> None:
    """Counts in positional notation ('1,024', not '2¹⁰' or '1e3'); from 10,000 up as '10k',
    '1M', so a log axis over many decades keeps its labels apart."""
    target = ax.xaxis if axis == "x" else ax.yaxis
    target.set_major_formatter(FuncFormatter(lambda v, _pos: _count_tick(v)))
    target.set_minor_formatter(FuncFormatter(lambda _v, _p: ""))


def _count_tick(v: float) -> str:
    if 0 < abs(v) < 1:
        return format_plain(v, 2)
    if abs(v) >= 1e6:
        return f"{v / 1e6:,.3g}M"
    if abs(v) >= 1e4:
        return f"{v / 1e3:,.3g}k"
    return f"{v:,.0f}"


def spans_decades(values: Sequence[float]) -> bool:
    positive = [v for v in values if v > 0]
    return bool(positive) and max(positive) / min(positive) > DECADES


def time_breakdown(results: list[Result], path: Path) -> Path:
    """Share of each chip's step time by op kind (100 % bars, so a 100 µs chip is as readable as
    a 10 ms one), with the step time written beside each bar."""
    fig, ax = _figure(9, 1.6 + 0.55 * len(results))
    kinds = sorted({c.kind for r in results for c in r.ops} | ({"host"} if any(r.step_overhead_s for r in results) else set()))
    lefts = np.zeros(len(results))
    for kind in kinds:
        shares = np.array([_kind_time(r, kind) / r.latency_s * 100 if r.latency_s else 0.0
                           for r in results])
        shares = np.minimum(shares, 100 - lefts)  # pipelined steps: shares of the trip, capped
        ax.barh(range(len(results)), shares, left=lefts, label="host (step)" if kind == "host" else kind,
                color=KIND_COLOURS.get(kind))
        lefts += shares
    ax.set_yticks(range(len(results)), [f"{r.hw}\n{format_si(r.latency_s, 's')} per step"
                                        + (f", {_point(r)}" if _several_points(results) else "")
                                        for r in results])
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel("share of step time (%)")
    ax.set_title("Where the time goes, by op kind (each bar is 100 % of its chip's step)")
    ax.legend(title="op kind", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _save(fig, path)


def _kind_time(result: Result, kind: str) -> float:
    if kind == "host":
        return result.step_overhead_s
    # Per-op costs are for one group of users; ops of a pipelined system overlap, so the shares
    # are of the summed op time scaled to the step.
    ops = sum(c.time_s for c in result.ops)
    scale = (result.latency_s - result.step_overhead_s) / ops if ops else 0.0
    return sum(c.time_s for c in result.ops if c.kind == kind) * scale


def _point(r: Result) -> str:
    size = "prompt" if r.workload["phase"] == "prefill" else "context"
    return f"batch {r.workload['batch']}, {size} {r.workload[size]:,}"


def _several_points(results: list[Result]) -> bool:
    return len({(r.workload["batch"], r.workload["prompt"], r.workload["context"]) for r in results}) > 1


def op_intensity(cost: OpCost, roof: Roof) -> float | None:
    """FLOP per byte of the roof's memory; None when the op moves no byte there (infinite)."""
    moved = cost.bytes.get(roof.level, 0.0)
    return cost.flops / moved if moved > 0 else None


def roofline(results: list[Result], roofs: dict[str, Roof], path: Path) -> Path:
    """Each op as a point (FLOP per byte of the chip's main memory, achieved FLOP/s) under the
    roof of its own format: one roof line per (chip, format) present at that format's peak, so a
    bf16 op is never drawn under an fp8 peak, and one for the vector unit.  An SRAM-resident chip
    is drawn against its SRAM (on-chip intensity) and says it moves no off-chip byte; an op that
    moves no byte of that memory sits at the right edge (infinite intensity)."""
    fig, ax = _figure(11, 7.5)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    styles = ["-", "--", ":", "-."]
    xs = np.logspace(-2, 5, 200)
    right_edge = 1e5
    for i, r in enumerate(results):
        colour = colours[i % len(colours)]
        roof = roofs[r.hw]
        where = f"{roof.level.upper()} on chip, no off-chip bytes" if roof.on_chip else roof.level.upper()
        units = sorted({roof.unit_of(c) for c in r.ops if c.flops > 0}, key=lambda u: -roof.peak(u))
        for j, unit in enumerate(units):
            peak = roof.peak(unit)
            ax.plot(xs, np.minimum(peak, xs * roof.bandwidth), color=colour, lw=1.4,
                    ls=styles[j % len(styles)],
                    label=f"{r.hw}: {unit} {format_si(peak, 'FLOP/s')}, {where}")
        points = [(op_intensity(c, roof), c.flops / c.time_s) for c in r.ops if c.flops > 0 and c.time_s > 0]
        if points:
            x = [right_edge if v is None else min(max(v, 1e-2), right_edge) for v, _ in points]
            ax.scatter(x, [y for _, y in points], s=14, color=colour, alpha=0.6)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(1e-2, right_edge * 1.5)
    si_ticks(ax, "y", "FLOP/s")
    plain_ticks(ax, "x")
    ax.set_xlabel("arithmetic intensity: FLOP per byte of the chip's main memory (right edge: no byte moved)")
    ax.set_ylabel("achieved throughput")
    ax.set_title("Roofline: every op (points) under the roof of its own format (lines)")
    ax.grid(which="major", alpha=0.25)
    ax.legend(fontsize=9, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2)
    return _save(fig, path)


def memory_footprint(results: list[Result], capacities: dict[str, tuple[str, float]], path: Path) -> Path:
    """What each system holds: weights, KV cache, recurrent state and the largest op's
    activations, on a log axis (16 GB of weights beside 300 MB of KV), with the capacity of the
    memory that holds the KV cache marked (``capacities``: chip -> (level, bytes per chip);
    weights fixed in ROM sit outside it)."""
    parts = [p for p in FOOTPRINT_LABELS if any(r.footprint_bytes.get(p, 0) > 0 for r in results)]
    fig, ax = _figure(9, 1.8 + 0.3 * len(results) * len(parts))
    height = 0.8 / max(len(parts), 1)
    for j, part in enumerate(parts):
        values = [r.footprint_bytes.get(part, 0.0) for r in results]
        ys = np.arange(len(results)) + (j - (len(parts) - 1) / 2) * height
        ax.barh(ys, [max(v, 1.0) for v in values], height=height * 0.9, color=FOOTPRINT_COLOURS[part],
                label=FOOTPRINT_LABELS[part])
        for y, v in zip(ys, values):
            ax.annotate(f" {format_si(v, 'B')}", (max(v, 1.0), y), va="center", fontsize=8)
    for y, r in enumerate(results):
        level, capacity = capacities.get(r.hw, ("", 0.0))
        if capacity:
            total = capacity * r.chips
            ax.plot([total, total], [y - 0.45, y + 0.45], color="black", lw=2)
            ax.annotate(f"{level.upper()} {format_si(total, 'B')} ({r.chips} chip{'s' if r.chips > 1 else ''})",
                        (total, y - 0.45), fontsize=8, ha="right", va="bottom")
    ax.set_xscale("log")
    si_ticks(ax, "x", "B")
    ax.set_yticks(range(len(results)), [r.hw for r in results])
    ax.invert_yaxis()
    ax.set_xlabel("bytes held (log scale)")
    ax.set_title("Memory footprint per system (mark: the memory holding the KV cache)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(axis="x", alpha=0.25)
    return _save(fig, path)


def _series(results: list[Result], key) -> dict[str, list[Result]]:
    lines: dict[str, list[Result]] = {}
    for r in results:
        lines.setdefault(key(r), []).append(r)
    return lines


def throughput_latency(results: list[Result], path: Path) -> Path:
    """Per-user speed against system throughput as the batch grows, one line per chip (and
    size): the trade a serving operator picks a point on.  Points are labelled with the batch."""
    fig, ax = _figure(9, 5.5)
    size = "prompt" if results[0].workload["phase"] == "prefill" else "context"
    for label, rs in _series(results, lambda r: f"{r.hw}, {size} {r.workload[size]:,}").items():
        rs = sorted(rs, key=lambda r: r.workload["batch"])
        ax.plot([r.latency_s for r in rs], [r.tokens_per_s for r in rs], "-o", ms=4, label=label)
        for r in rs:
            ax.annotate(f"b{r.workload['batch']}", (r.latency_s, r.tokens_per_s), fontsize=8,
                        textcoords="offset points", xytext=(4, 4))
    _log_if_wide(ax, [r.latency_s for r in results], [r.tokens_per_s for r in results])
    si_ticks(ax, "x", "s")
    plain_ticks(ax, "y")
    ax.set_xlabel("step latency (time per token for each user)")
    ax.set_ylabel("system throughput (tokens/s)")
    ax.set_title("Throughput against latency as the batch grows (labels: batch)")
    ax.grid(which="major", alpha=0.25)
    ax.legend(loc="best")
    return _save(fig, path)


def latency_size(results: list[Result], path: Path) -> Path:
    """Step latency against context (decode) or TTFT against prompt length (prefill), one line
    per chip and batch."""
    prefill = results[0].workload["phase"] == "prefill"
    size = "prompt" if prefill else "context"
    fig, ax = _figure(9, 5.5)
    for label, rs in _series(results, lambda r: f"{r.hw}, batch {r.workload['batch']}").items():
        rs = sorted(rs, key=lambda r: r.workload[size])
        ax.plot([r.workload[size] for r in rs], [r.latency_s for r in rs], "-o", ms=4, label=label)
    _log_if_wide(ax, [max(r.workload[size], 1) for r in results], [r.latency_s for r in results])
    plain_ticks(ax, "x")
    si_ticks(ax, "y", "s")
    ax.set_xlabel(f"{size} length (tokens)")
    ax.set_ylabel("time to first token (prefill step)" if prefill else "decode step latency")
    ax.set_title("TTFT against prompt length" if prefill else "Decode latency against context length")
    ax.grid(which="major", alpha=0.25)
    ax.legend(loc="best")
    return _save(fig, path)


def _log_if_wide(ax: Axes, xs: Sequence[float], ys: Sequence[float]) -> None:
    if spans_decades(xs):
        ax.set_xscale("log")
    if spans_decades(ys):
        ax.set_yscale("log")


def _value(v: float, unit: str) -> str:
    if unit == "tokens/s":
        return f"{format_plain(v)} tokens/s"
    if unit == "$/Mtoken":
        return f"${format_plain(v)}/Mtoken"
    return format_si(v, unit)


def metric_panels(labels: list[str], panels: dict[str, tuple[list[float], str, bool]], title: str,
                  path: Path) -> Path:
    """Side-by-side horizontal bars of several metrics for the same rows (a study's chips):
    ``panels`` maps a panel title to (values, unit, higher is better); each panel takes a log
    scale when its values span decades, and every bar is labelled with its value."""
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(1, len(panels), figsize=(7 * len(panels), 1.5 + 0.42 * len(labels)),
                                 sharey=True, squeeze=False)
    for ax, (name, (values, unit, higher)) in zip(axes[0], panels.items()):
        ax.barh(range(len(labels)), values, color="#4c72b0")
        for y, v in enumerate(values):
            ax.annotate(f" {_value(v, unit)}", (v, y), va="center", fontsize=9)
        if spans_decades(values):
            ax.set_xscale("log")
        if unit in ("tokens/s", "$/Mtoken"):
            plain_ticks(ax, "x")
        else:
            si_ticks(ax, "x", unit)
        ax.margins(x=0.25)  # room for the value labels
        ax.set_title(name)
        ax.set_xlabel(f"{unit}, {'higher' if higher else 'lower'} is better"
                      f"{' (log scale)' if ax.get_xscale() == 'log' else ''}")
        ax.grid(axis="x", which="major", alpha=0.25)
    axes[0][0].set_yticks(range(len(labels)), labels)
    axes[0][0].invert_yaxis()
    fig.suptitle(title, fontsize=13)
    return _save(fig, path)
