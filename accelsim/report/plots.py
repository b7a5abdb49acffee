"""Matplotlib figures for reports. Every axis carries its unit; every figure is saved as PNG."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from accelsim.sim.result import Result

KIND_COLOURS = {"matmul": "#1f77b4", "attention": "#ff7f0e", "elementwise": "#2ca02c",
                "norm": "#d62728", "embedding": "#9467bd", "scan": "#8c564b", "conv": "#e377c2",
                "collective": "#7f7f7f"}


def time_breakdown(results: list[Result], path: Path) -> Path:
    """Stacked bars: step time per op kind, one bar per hardware (log-free, in ms)."""
    fig, ax = plt.subplots(figsize=(8, 4.5))
    labels = [r.hw for r in results]
    bottoms = np.zeros(len(results))
    kinds = sorted({c.kind for r in results for c in r.ops})
    for kind in kinds:
        # Per-op costs are for one group of users; the step runs every group through them.
        heights = np.array([sum(c.time_s for c in r.ops if c.kind == kind) * 1e3 for r in results])
        ax.bar(labels, heights, bottom=bottoms, label=kind, color=KIND_COLOURS.get(kind))
        bottoms += heights
    for x, total in enumerate(bottoms):
        ax.annotate(f"{total:.3g} ms", (x, total), ha="center", va="bottom", fontsize=9)
    ax.set_ylabel("summed op time per step (ms)")
    ax.set_title("Where the time goes, by op kind")
    ax.legend(title="op kind", fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def roofline(results: list[Result], roofs: dict[str, tuple[float, float]], path: Path) -> Path:
    """Each op as a point (FLOP per off-chip byte, achieved FLOP/s) under its chip's roofline.

    ``roofs`` maps hardware name -> (peak FLOP/s, off-chip bandwidth B/s)."""
    fig, ax = plt.subplots(figsize=(8, 5))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, r in enumerate(results):
        colour = colours[i % len(colours)]
        peak, bandwidth = roofs[r.hw]
        xs = np.logspace(-2, 5, 200)
        ax.plot(xs, np.minimum(peak, xs * bandwidth), color=colour, lw=1.5, label=f"{r.hw} roof")
        points = [(c.flops / max(_offchip_bytes(c), 1e-30), c.flops / c.time_s) for c in r.ops
                  if c.flops > 0 and c.time_s > 0]
        if points:
            x, y = zip(*points)
            ax.scatter(np.clip(x, 1e-2, 1e5), y, s=12, color=colour, alpha=0.6)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (FLOP per off-chip byte)")
    ax.set_ylabel("achieved throughput (FLOP/s)")
    ax.set_title("Roofline: every op of one step (points) under each chip's roof (lines)")
    ax.grid(which="both", alpha=0.2)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _offchip_bytes(cost) -> float:
    """Bytes crossing the outermost interface the op used (HBM/DRAM), else its SRAM bytes.
    Weights wired beside the MACs (ROM) cross no bandwidth-limited interface, so never count."""
    for level in ("hbm", "dram"):
        if cost.bytes.get(level):
            return cost.bytes[level]
    return sum(v for level, v in cost.bytes.items() if level != "rom")
