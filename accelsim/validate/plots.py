"""Predicted vs measured, log-log with the y = x line, one panel per metric."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

MARKERS = {"a100-sxm": "o", "h100-sxm": "s", "h200": "^"}


def scatter_plots(points: pd.DataFrame, out: Path, prefix: str = "validation_") -> list[Path]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for metric, rows in points.groupby("metric", sort=True):
        fig, ax = plt.subplots(figsize=(4.6, 4.2))
        colours = {hw: f"C{i}" for i, hw in enumerate(sorted(rows["hw"].unique()))}
        for (hw, part), sub in rows.groupby(["hw", "split"], sort=True):
            # hollow calibration markers need an edge colour of their own, or they vanish
            ax.scatter(sub["measured"], sub["predicted"], marker=MARKERS.get(hw, "D"),
                       edgecolors=colours[hw], facecolors="none" if part == "calibration" else colours[hw],
                       label=f"{hw} ({part})", s=36)
        lo = min(rows["measured"].min(), rows["predicted"].min()) / 1.5
        hi = max(rows["measured"].max(), rows["predicted"].max()) * 1.5
        ax.plot([lo, hi], [lo, hi], "k-", lw=0.8, label="y = x")
        for band in (0.85, 1.15):
            ax.plot([lo, hi], [lo * band, hi * band], "k:", lw=0.6)
        ax.set(xscale="log", yscale="log", xlim=(lo, hi), ylim=(lo, hi),
               xlabel=f"measured ({rows['unit'].iloc[0]})", ylabel=f"predicted ({rows['unit'].iloc[0]})",
               title=f"{metric} (dotted: +/-15 %)")
        ax.legend(fontsize=6, loc="upper left")
        fig.tight_layout()
        path = out / f"{prefix}{metric}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written
