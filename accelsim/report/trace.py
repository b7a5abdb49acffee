"""Chrome trace-event JSON (opens in Perfetto and chrome://tracing) and a timeline plot.

Format: the Trace Event Format's JSON object form, ``{"traceEvents": [...]}``.  Each busy
interval is a complete event (``ph: "X"``) with ``ts``/``dur`` in microseconds; every resource
gets its own ``pid`` (process) so Perfetto draws one track group per resource, named by
``process_name`` metadata events (``ph: "M"``).  Time series (queue length, running requests)
are counter events (``ph: "C"``).
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from accelsim.report.plots import KIND_COLOURS
from accelsim.sim.timeline import Interval, Timeline

US_PER_S = 1e6


@dataclass(frozen=True)
class Counter:
    """A sampled time series shown as a counter track: (time in seconds, value) points."""

    name: str
    points: tuple[tuple[float, float], ...]


def trace_events(intervals: Iterable[Interval], counters: Iterable[Counter] = (),
                 process: str = "accelsim") -> list[dict]:
    """Trace events for the intervals (one pid per resource, one tid per group) and counters."""
    intervals = list(intervals)
    resources: dict[str, int] = {}
    for iv in sorted(intervals, key=lambda i: i.start_s):
        resources.setdefault(iv.resource, len(resources) + 1)
    events: list[dict] = []
    for name, pid in resources.items():
        events.append({"ph": "M", "name": "process_name", "pid": pid, "tid": 0, "args": {"name": name}})
        events.append({"ph": "M", "name": "process_sort_index", "pid": pid, "tid": 0,
                       "args": {"sort_index": pid}})
    for iv in intervals:
        args = {"kind": iv.kind, "group": iv.group, "round": iv.round}
        if iv.cycles is not None:
            args["cycles"] = round(iv.cycles, 3)
        events.append({"ph": "X", "name": iv.name, "cat": iv.kind, "pid": resources[iv.resource],
                       "tid": iv.group, "ts": iv.start_s * US_PER_S, "dur": iv.duration_s * US_PER_S,
                       "args": args})
    counter_pid = len(resources) + 1
    counters = list(counters)
    if counters:
        events.append({"ph": "M", "name": "process_name", "pid": counter_pid, "tid": 0,
                       "args": {"name": f"{process} counters"}})
    for counter in counters:
        for t, value in counter.points:
            events.append({"ph": "C", "name": counter.name, "pid": counter_pid, "tid": 0,
                           "ts": t * US_PER_S, "args": {counter.name: value}})
    return events


def write_trace(path: Path, intervals: Iterable[Interval], counters: Iterable[Counter] = (),
                metadata: Mapping[str, object] | None = None) -> Path:
    """Write a trace-event JSON file; ``metadata`` lands in the top-level ``otherData``."""
    payload = {"traceEvents": trace_events(intervals, counters), "displayTimeUnit": "ms",
               "otherData": dict(metadata or {})}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, default=float), encoding="utf-8")
    return path


def timeline_trace(timeline: Timeline, path: Path, title: str = "") -> Path:
    return write_trace(path, timeline.intervals, metadata={
        "title": title, "makespan_s": timeline.makespan_s, "analytical_s": timeline.analytical_s,
        "critical_path": [f"{i.resource}: {i.name}" for i in timeline.critical_path]})


def timeline_plot(timeline: Timeline, path: Path, title: str = "Timeline", max_rows: int = 40) -> Path:
    """Gantt chart: one row per resource (busiest first when there are many), bars coloured by
    op kind, the critical path outlined in black; time axis in milliseconds."""
    busy = timeline.busy_s()
    rows = timeline.resources()
    if len(rows) > max_rows:
        rows = sorted(rows, key=lambda r: -busy[r])[:max_rows]
    y_of = {r: i for i, r in enumerate(rows)}
    critical = {(i.resource, i.name, i.group, i.round, i.start_s) for i in timeline.critical_path}
    fig, ax = plt.subplots(figsize=(10, 1.2 + 0.35 * len(rows)))
    # One broken_barh call per (kind, row): thousands of ops draw in well under a second.
    spans: dict[tuple[str, int], list[tuple[float, float]]] = {}
    outlined: list[tuple[float, float, int]] = []
    for iv in timeline.intervals:
        if iv.resource in y_of:
            span = (iv.start_s * 1e3, iv.duration_s * 1e3)
            spans.setdefault((iv.kind, y_of[iv.resource]), []).append(span)
            if (iv.resource, iv.name, iv.group, iv.round, iv.start_s) in critical:
                outlined.append((*span, y_of[iv.resource]))
    labelled: set[str] = set()
    for (kind, y), bars in sorted(spans.items()):
        ax.broken_barh(bars, (y - 0.35, 0.7), facecolors=KIND_COLOURS.get(kind, "#bbbbbb"),
                       label=None if kind in labelled else kind)
        labelled.add(kind)
    for start, width, y in outlined:
        ax.broken_barh([(start, width)], (y - 0.35, 0.7), facecolors="none", edgecolors="black",
                       linewidth=0.6)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([f"{r} ({busy[r] / timeline.makespan_s:.0%})" if timeline.makespan_s else r
                        for r in rows], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("time (ms)")
    ax.set_ylabel("resource (utilisation)")
    ax.set_title(f"{title}: makespan {timeline.makespan_s * 1e3:.4g} ms (critical path outlined)")
    ax.legend(title="op kind", fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
