"""Held-out validation groups as tests check them: the measured values come from the CSVs,
never retyped."""

from __future__ import annotations


def holdout_group_median(hw: str, metric: str) -> float:
    """Median |error| over the held-out points of (``hw``, ``metric``); at least two, none skipped."""
    from accelsim.validate.points import Catalogue, select
    from accelsim.validate.run import evaluate, hardware_for
    catalogue = Catalogue()
    points = [p for p in select(catalogue, "holdout") if p.hw == hw and p.metric == metric]
    assert len(points) >= 2, f"{hw}/{metric}: {len(points)} held-out points"
    frame, skipped = evaluate(catalogue, points, hardware_for(points))
    assert skipped.empty and len(frame) == len(points)
    return float(frame["abs_error"].median())
