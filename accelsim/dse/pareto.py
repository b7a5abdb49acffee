"""Pareto fronts and the NSGA-II ranking pieces, as pure functions over a matrix of objectives.

Every function takes ``values`` of shape (points, objectives) already oriented so that smaller
is better (negate a maximised metric first, see ``oriented``).
"""
from __future__ import annotations

import numpy as np


def oriented(columns: list[np.ndarray], senses: list[str]) -> np.ndarray:
    """Stack objective columns into a minimisation matrix ('max' columns are negated)."""
    return np.column_stack([(-c if s == "max" else c) for c, s in zip(columns, senses)]).astype(float)


def dominates(a: np.ndarray, b: np.ndarray) -> bool:
    """``a`` is no worse than ``b`` everywhere and strictly better somewhere."""
    return bool(np.all(a <= b) and np.any(a < b))


def pareto_mask(values: np.ndarray) -> np.ndarray:
    """True for points no other point dominates (duplicates of a front point stay on it)."""
    n = len(values)
    keep = np.ones(n, dtype=bool)
    for i in range(n):
        no_worse = np.all(values <= values[i], axis=1)
        better = np.any(values < values[i], axis=1)
        if np.any(no_worse & better):
            keep[i] = False
    return keep


def non_dominated_ranks(values: np.ndarray) -> np.ndarray:
    """Front number of each point (0 = the Pareto front), by peeling fronts off in turn."""
    ranks = np.full(len(values), -1)
    remaining = np.arange(len(values))
    front = 0
    while remaining.size:
        mask = pareto_mask(values[remaining])
        ranks[remaining[mask]] = front
        remaining = remaining[~mask]
        front += 1
    return ranks


def crowding_distance(values: np.ndarray) -> np.ndarray:
    """NSGA-II crowding distance within one front: boundary points are infinitely far."""
    n, m = values.shape
    distance = np.zeros(n)
    if n <= 2:
        return np.full(n, np.inf)
    for j in range(m):
        order = np.argsort(values[:, j], kind="stable")
        span = values[order[-1], j] - values[order[0], j]
        distance[order[0]] = distance[order[-1]] = np.inf
        if span > 0:
            distance[order[1:-1]] += (values[order[2:], j] - values[order[:-2], j]) / span
    return distance


def constrained_ranks(values: np.ndarray, violation: np.ndarray) -> np.ndarray:
    """Deb's constraint handling: feasible points (violation 0) ranked by non-domination, then
    every infeasible point after them, the smaller violations first."""
    feasible = violation <= 0
    ranks = np.zeros(len(values), dtype=float)
    if feasible.any():
        ranks[feasible] = non_dominated_ranks(values[feasible])
    offset = ranks[feasible].max() + 1 if feasible.any() else 0
    order = np.argsort(np.argsort(violation[~feasible], kind="stable"), kind="stable")
    ranks[~feasible] = offset + order
    return ranks
