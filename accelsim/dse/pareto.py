"""Pareto fronts and the NSGA-II ranking pieces, as pure functions over a matrix of objectives.

Every function takes ``values`` of shape (points, objectives) already oriented so that smaller
is better (negate a maximised metric first, see ``oriented``).
"""
from __future__ import annotations

import bisect

import numpy as np


def oriented(columns: list[np.ndarray], senses: list[str]) -> np.ndarray:
    """Stack objective columns into a minimisation matrix ('max' columns are negated)."""
    return np.column_stack([(-c if s == "max" else c) for c, s in zip(columns, senses)]).astype(float)


def dominates(a: np.ndarray, b: np.ndarray) -> bool:
    """``a`` is no worse than ``b`` everywhere and strictly better somewhere."""
    return bool(np.all(a <= b) and np.any(a < b))


def pareto_mask(values: np.ndarray) -> np.ndarray:
    """True for points no other point dominates (duplicates of a front point stay on it).

    O(n log n) for one to three objectives (a sort and a sweep), a sort-filter skyline beyond.
    A row with a NaN compares false with everything, as in the definition: nothing dominates it
    and it dominates nothing, so it is kept and left out of the sweep.
    """
    values = np.asarray(values, dtype=float)
    if values.ndim == 1:
        values = values[:, None]
    keep = np.ones(len(values), dtype=bool)
    rows = np.flatnonzero(~np.isnan(values).any(axis=1))
    if len(rows) == 0:
        return keep
    # Cheap first pass: a few strong points knock out most of a large set at numpy speed; the
    # exact sweep then runs on what is left (anything a knocked-out row dominates, the row that
    # knocked it out dominates too, so the front of the rest is the front of all).
    knocked = _dominated_by_pivots(values[rows])
    keep[rows[knocked]] = False
    rows = rows[~knocked]
    # Dominance ignores duplicates (a point never dominates its copy), so decide each distinct
    # row once, in lexicographic order: a dominator is always lexicographically smaller than
    # the point it dominates, so each sweep looks only backwards.
    distinct, group = _distinct_sorted(values[rows])
    m = distinct.shape[1]
    if m == 1:
        front = np.zeros(len(distinct), dtype=bool)
        front[0] = True
    elif m == 2:
        front = _front_2d(distinct)
    elif m == 3:
        front = _front_3d(distinct)
    else:
        front = _front_kd(distinct)
    keep[rows] = front[group]
    return keep


# Points used by the first pass; a handful is enough to remove most of a random or grid set.
_PIVOTS = 24


def _dominated_by_pivots(values: np.ndarray) -> np.ndarray:
    """Rows dominated by one of the rows with the smallest range-normalised sum of objectives."""
    n = len(values)
    hit = np.zeros(n, dtype=bool)
    if n <= 4 * _PIVOTS:
        return hit
    finite = np.where(np.isfinite(values), values, np.nan)
    low, high = np.nanmin(finite, axis=0), np.nanmax(finite, axis=0)
    span = np.where(high > low, high - low, 1.0)
    scaled = np.nan_to_num((np.clip(values, low, high) - low) / span, nan=0.0)
    score = scaled.sum(axis=1)
    for p in np.argpartition(score, _PIVOTS)[:_PIVOTS]:
        pivot = values[p]
        alive = np.flatnonzero(~hit)
        part = values[alive]
        hit[alive] = np.all(pivot <= part, axis=1) & np.any(pivot < part, axis=1)
    return hit


def _distinct_sorted(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct rows in lexicographic order and, for each input row, the index of its copy."""
    order = np.lexsort(rows.T[::-1])
    ordered = rows[order]
    new = np.ones(len(rows), dtype=bool)
    new[1:] = np.any(ordered[1:] != ordered[:-1], axis=1)
    group = np.empty(len(rows), dtype=np.intp)
    group[order] = np.cumsum(new) - 1
    return ordered[new], group


def _front_2d(distinct: np.ndarray) -> np.ndarray:
    """Distinct rows in lexicographic order: a row is dominated exactly when some earlier row
    has a second objective no worse, i.e. when the running minimum before it is <= its own."""
    before = np.minimum.accumulate(distinct[:-1, 1])
    dominated = np.zeros(len(distinct), dtype=bool)
    dominated[1:] = before <= distinct[1:, 1]
    return ~dominated


def _front_3d(distinct: np.ndarray) -> np.ndarray:
    """Distinct rows in lexicographic order, swept with the staircase of the front so far in
    the last two objectives (second ascending, third strictly descending): a row is dominated
    when the stair at or left of its second objective is no higher in the third."""
    front = np.zeros(len(distinct), dtype=bool)
    ys: list[float] = []
    zs: list[float] = []
    for i, (y, z) in enumerate(distinct[:, 1:].tolist()):
        at = bisect.bisect_right(ys, y)
        if at and zs[at - 1] <= z:
            continue
        front[i] = True
        # The new stair hides every stair right of it that is no lower.
        end = at
        while end < len(ys) and zs[end] >= z:
            end += 1
        ys[at:end] = [y]
        zs[at:end] = [z]
    return front


# Rows compared at once in the k-D skyline: bounds the (block x front x k) temporaries.
_BLOCK = 256


def _front_kd(distinct: np.ndarray) -> np.ndarray:
    """Sort-filter skyline for four or more objectives: distinct rows in lexicographic order
    (so only earlier rows can dominate), a block at a time, first against the front found so
    far and then against the rest of the block."""
    front = np.zeros(len(distinct), dtype=bool)
    sky = np.empty((0, distinct.shape[1]))
    for start in range(0, len(distinct), _BLOCK):
        block = distinct[start:start + _BLOCK]
        alive = np.flatnonzero(~_dominated_by(block, sky))
        cand = block[alive]
        # Rows are distinct, so "no worse everywhere" than another row means dominated by it.
        no_worse = np.all(cand[None, :, :] <= cand[:, None, :], axis=2)
        np.fill_diagonal(no_worse, False)
        survivors = ~no_worse.any(axis=1)
        front[start + alive[survivors]] = True
        sky = np.vstack([sky, cand[survivors]])
    return front


def _dominated_by(block: np.ndarray, sky: np.ndarray) -> np.ndarray:
    """For each row of ``block``, whether a (distinct) row of ``sky`` is no worse everywhere;
    rows already knocked out are not compared again."""
    hit = np.zeros(len(block), dtype=bool)
    for s in range(0, len(sky), _BLOCK):
        alive = np.flatnonzero(~hit)
        if not len(alive):
            break
        part = sky[s:s + _BLOCK]
        hit[alive] = np.all(part[None, :, :] <= block[alive][:, None, :], axis=2).any(axis=1)
    return hit


# Four or more objectives: up to this many points, ranks come from the whole dominance matrix at
# numpy speed (an NSGA-II population and its children: 512 points, 0.8 MB per objective);
# beyond, by peeling fronts.  One to three objectives: one sweep (``_ranks_by_sweep``).
_MATRIX_MAX = 1024


def non_dominated_ranks(values: np.ndarray) -> np.ndarray:
    """Front number of each point (0 = the Pareto front), by peeling fronts off in turn."""
    values = np.asarray(values, dtype=float)
    if values.ndim == 2 and 0 < len(values) and values.shape[1] <= 3:
        return _ranks_by_sweep(values)
    if 0 < len(values) <= _MATRIX_MAX:
        return _ranks_by_matrix(np.asarray(values, dtype=float))
    ranks = np.full(len(values), -1)
    remaining = np.arange(len(values))
    front = 0
    while remaining.size:
        mask = pareto_mask(values[remaining])
        ranks[remaining[mask]] = front
        remaining = remaining[~mask]
        front += 1
    return ranks


def _ranks_by_sweep(values: np.ndarray) -> np.ndarray:
    """The same fronts as peeling, for one to three objectives, in one pass over the distinct
    rows in lexicographic order (padded with zero columns to three): only an earlier row can
    dominate a later one, and a row's front is the first whose staircase so far (as in
    ``_front_3d``) does not dominate it.  Fronts are tried by bisection: a row one front
    dominates, the front before dominates too (the dominator has a dominator there, already
    seen).  Rows with a NaN dominate nothing and nothing dominates them: front 0; copies of a
    row share its front."""
    ranks = np.zeros(len(values), dtype=np.int64)
    rows = np.flatnonzero(~np.isnan(values).any(axis=1))
    if not len(rows):
        return ranks
    part = values[rows]
    if part.shape[1] < 3:
        part = np.hstack([part, np.zeros((len(part), 3 - part.shape[1]))])
    distinct, group = _distinct_sorted(part)
    stairs: list[tuple[list[float], list[float]]] = []  # per front: second objective ascending, third descending
    found = []
    for y, z in distinct[:, 1:].tolist():
        low, high = 0, len(stairs)
        while low < high:
            mid = (low + high) // 2
            ys, zs = stairs[mid]
            at = bisect.bisect_right(ys, y)
            if at and zs[at - 1] <= z:
                low = mid + 1  # dominated by this front: a later one
            else:
                high = mid
        if low == len(stairs):
            stairs.append(([], []))
        ys, zs = stairs[low]
        at = bisect.bisect_right(ys, y)
        end = at
        while end < len(ys) and zs[end] >= z:  # stairs the new one hides
            end += 1
        ys[at:end] = [y]
        zs[at:end] = [z]
        found.append(low)
    ranks[rows] = np.array(found, dtype=np.int64)[group]
    return ranks


def _ranks_by_matrix(values: np.ndarray) -> np.ndarray:
    """The same fronts as peeling with ``pareto_mask``: a point's front is the first in which
    none of the points still left dominates it.  ``dominated[i, j]``: i dominates j (NaN
    compares false, so a row with a NaN dominates nothing and nothing dominates it)."""
    if values.ndim == 1:
        values = values[:, None]
    n = len(values)
    no_worse, better = np.ones((n, n), dtype=bool), np.zeros((n, n), dtype=bool)
    for column in values.T:  # one objective at a time: 2-D temporaries only
        no_worse &= column[:, None] <= column[None, :]
        better |= column[:, None] < column[None, :]
    dominated = no_worse & better
    dominators = dominated.sum(axis=0)  # per point, how many points still left dominate it
    ranks = np.full(len(values), -1)
    left = np.ones(len(values), dtype=bool)
    front = 0
    while left.any():
        now = left & (dominators == 0)
        ranks[now] = front
        left &= ~now
        dominators = dominators - dominated[now].sum(axis=0)
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


def crowding_by_rank(values: np.ndarray, ranks: np.ndarray) -> np.ndarray:
    """``crowding_distance`` within each rank of more than two points, all ranks at once (a
    rank of one or two points: all boundary points, infinitely far).  Per objective the points
    are sorted by rank, then value (stable, as each rank's own sort), and each rank's inner
    points get the same sums in the same order."""
    n, m = values.shape
    distance = np.full(n, np.inf)
    _, group, counts = np.unique(ranks, return_inverse=True, return_counts=True)
    group = np.asarray(group).ravel()
    crowded = np.flatnonzero(counts[group] > 2)
    if not len(crowded):
        return distance
    part, keys = values[crowded], group[crowded]
    found = np.zeros(len(crowded))
    positions = np.arange(len(crowded))
    for j in range(m):
        order = np.lexsort((part[:, j], keys))
        v, k = part[order, j], keys[order]
        first = np.concatenate([[True], k[1:] != k[:-1]])
        last = np.concatenate([k[1:] != k[:-1], [True]])
        start = np.maximum.accumulate(np.where(first, positions, 0))
        end = np.minimum.accumulate(np.where(last, positions, len(v))[::-1])[::-1]
        span = v[end] - v[start]
        found[order[first | last]] = np.inf
        inner = np.flatnonzero(~first & ~last & (span > 0))
        found[order[inner]] += (v[inner + 1] - v[inner - 1]) / span[inner]
    distance[crowded] = found
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
