"""Search strategies over a design space, and the reading of results: feasibility, the Pareto
front and the design a target asks for.

``grid`` visits every combination; ``random`` draws points with a seeded generator (continuous
in ranges); ``nsga2`` evolves a population over each parameter's grid values (NSGA-II: rank by
non-domination with Deb's constraint handling, crowding distance, binary tournaments, uniform
crossover, random-reset mutation).  Every evaluation goes through ``evaluate(points) -> rows``,
so the same runner (local, Dask, resumable) serves all three.
"""
from __future__ import annotations

import itertools
import math
import operator
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from accelsim.dse import pareto
from accelsim.dse.metrics import STATUS_OK
from accelsim.dse.space import Condition, Space

Evaluate = Callable[[list[dict[str, Any]]], list[dict[str, Any]]]
SEARCHES = ("grid", "random", "nsga2")


def iter_grid_points(space: Space) -> Iterator[dict[str, Any]]:
    """Every combination, lazily (a million-point grid is never a list)."""
    keys = space.keys
    return (dict(zip(keys, combo)) for combo in itertools.product(*(p.grid() for p in space.parameters)))


def grid_size(space: Space) -> int:
    return math.prod(len(p.grid()) for p in space.parameters)


def iter_random_points(space: Space, samples: int, seed: int) -> Iterator[dict[str, Any]]:
    """``samples`` seeded draws, lazily, in the same order as ``random_points``."""
    rng = np.random.default_rng(seed)
    if space.parameters and all(p.values is None for p in space.parameters):
        yield from _iter_range_points(space, samples, rng)
        return
    draws = [(p.key, p.sampler()) for p in space.parameters]
    for _ in range(samples):
        yield {key: draw(rng) for key, draw in draws}


_BLOCK = 4096


def _iter_range_points(space: Space, samples: int, rng: np.random.Generator) -> Iterator[dict[str, Any]]:
    """The draws of ``Parameter.sampler`` for a space of ranges only, a block of points at a
    time: one uniform float per parameter per point, row by row, is what numpy gives for an
    array of them, and the range arithmetic is the sampler's (the affine step in numpy, the
    same IEEE operations; ``exp`` and the encoding per value in Python)."""
    keys = space.keys
    columns = [p.columns() for p in space.parameters]
    for start in range(0, samples, _BLOCK):
        block = rng.random((min(_BLOCK, samples - start), len(keys)))
        values = [column(block[:, i]) for i, column in enumerate(columns)]
        for row in zip(*values):
            yield dict(zip(keys, row))


def grid_points(space: Space) -> list[dict[str, Any]]:
    return list(iter_grid_points(space))


def random_points(space: Space, samples: int, seed: int) -> list[dict[str, Any]]:
    return list(iter_random_points(space, samples, seed))


def violation(row: dict[str, Any], conditions: list[Condition]) -> float:
    """How far a row is from feasible (0 = feasible); points that failed count as infinitely far."""
    if row.get("status") != STATUS_OK:
        return float("inf")
    total = 0.0
    for c in conditions:
        v = row[c.metric]
        if v is None:  # a metric with no value (a breakeven that never comes) meets no bound
            return float("inf")
        gap = (v - c.value) if c.op == "<=" else (c.value - v)
        total += max(gap, 0.0) / max(abs(c.value), 1e-30)
    return total


def feasible(rows: list[dict[str, Any]], conditions: list[Condition]) -> list[dict[str, Any]]:
    return [r for r in rows if violation(r, conditions) == 0.0]


def objective_matrix(rows: list[dict[str, Any]], objectives: Mapping[str, str]) -> np.ndarray:
    """Objectives oriented for minimisation; a metric with no value (a breakeven that never
    comes) is the worst possible."""
    worst = {"min": np.inf, "max": -np.inf}
    return pareto.oriented([np.array([worst[s] if r[m] is None else r[m] for r in rows], dtype=float)
                            for m, s in objectives.items()], list(objectives.values()))


def front(rows: list[dict[str, Any]], objectives: Mapping[str, str]) -> list[dict[str, Any]]:
    if not rows:
        return []
    mask = pareto.pareto_mask(objective_matrix(rows, objectives))
    return [r for r, keep in zip(rows, mask) if keep]


@dataclass(frozen=True)
class Pick:
    """The design a target asks for: the best feasible row by ``metric``."""

    metric: str
    sense: str
    row: dict[str, Any] | None


def pick(rows: list[dict[str, Any]], metric: str, sense: str) -> Pick:
    if not rows:
        return Pick(metric, sense, None)
    valued = [r for r in rows if r[metric] is not None]
    if not valued:
        return Pick(metric, sense, None)
    key = (lambda r: r[metric]) if sense == "min" else (lambda r: -r[metric])
    return Pick(metric, sense, min(valued, key=key))


def nsga2(space: Space, evaluate: Evaluate, objectives: Mapping[str, str], conditions: list[Condition],
          samples: int, seed: int, population: int = 32) -> list[dict[str, Any]]:
    """Evolve ``population`` designs for about ``samples`` evaluations; return every row seen.

    Each row's violation and objective vector are worked out once, when it is first seen, and a
    generation is ranked from those arrays (a row is ranked in two generations' populations and
    merged sets, not re-read each time)."""
    rng = np.random.default_rng(seed)
    choices = [p.grid() for p in space.parameters]
    population = max(4, min(population, samples))
    genomes = np.column_stack([rng.integers(len(c), size=population) for c in choices])

    parameter_keys = [p.key for p in space.parameters]

    def decode(genes: tuple) -> dict[str, Any]:  # genes: Python ints (``tolist``)
        return dict(zip(parameter_keys, map(operator.getitem, choices, genes)))

    seen: dict[tuple, int] = {}  # genome -> its row's index in ``rows``
    rows: list[dict[str, Any]] = []
    # per row: violation, objective values -- as arrays, each generation's rows converted once
    # (a generation ranks its population and the merged set by indexing them)
    violations, objective_values = np.empty(0), np.empty((0, len(objectives)))

    def score(batch: np.ndarray) -> np.ndarray:
        nonlocal violations, objective_values
        keys = list(map(tuple, batch.tolist()))
        fresh = sorted({g for g in keys if g not in seen})
        viol, objs = [], []
        for g, row in zip(fresh, evaluate([decode(g) for g in fresh])):
            seen[g] = len(rows)
            rows.append(row)
            ok = row.get("status") == STATUS_OK
            viol.append(violation(row, conditions))
            objs.append([(row.get(m) if ok else 0.0) for m in objectives])
        violations = np.concatenate([violations, np.array(viol, dtype=float)])
        objective_values = np.concatenate([objective_values,
                                           np.array(objs, dtype=float).reshape(len(objs), len(objectives))])
        return np.fromiter((seen[g] for g in keys), dtype=np.intp, count=len(keys))

    def rank(members: np.ndarray, known: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        return _rank(violations[members], objective_values[members], list(objectives.values()), known)

    members = score(genomes)
    sizes = np.array([len(c) for c in choices])
    generations = max(1, samples // population - 1)
    known: np.ndarray | None = None
    for _ in range(generations):
        ranks, crowd = rank(members, known)
        children = _offspring(genomes, ranks, crowd, sizes, rng)
        merged = np.vstack([genomes, children])
        merged_members = np.concatenate([members, score(children)])
        ranks, crowd = rank(merged_members)
        order = np.lexsort((-crowd, ranks))[:population]
        # The survivors are whole ranks and the first of the next (``survivor_ranks``): their
        # ranks among themselves are the ones they had in the merged set.
        genomes, members, known = merged[order], merged_members[order], survivor_ranks(ranks, order)
    return rows


def _rank(viol: np.ndarray, objective_values: np.ndarray, senses: list[str],
          known: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Deb's constrained non-domination rank and the crowding distance within each rank.
    ``known``: the ranks, where the caller has them already (``survivor_ranks``)."""
    values = pareto.oriented(list(objective_values.T), senses)
    if known is None:
        finite = np.where(np.isfinite(viol), viol, np.nanmax(np.where(np.isfinite(viol), viol, 0)) + 1e9)
        known = pareto.constrained_ranks(values, finite)
    return known, pareto.crowding_by_rank(values, known)


def survivor_ranks(ranks: np.ndarray, order: np.ndarray) -> np.ndarray:
    """The constrained ranks of the points ``order`` picks from a ranked set, when ``order`` takes
    points by rank first (NSGA-II's survivors): ``ranks[order]``.  Why that is what ranking the
    picked points afresh gives: a point's non-domination rank is 0 without dominators, else one
    more than its dominators' highest, and every dominator of a picked point has a lower rank,
    so it was picked too; the infeasible points picked (only once every feasible one is) are the
    first in the stable order of violation, in that order, so the offset and their places among
    themselves are the same.  ``tests/test_nsga2_sixth_pass.py`` checks it against ranking afresh."""
    return ranks[order]


def _offspring(genomes: np.ndarray, ranks: np.ndarray, crowd: np.ndarray, sizes: np.ndarray,
               rng: np.random.Generator) -> np.ndarray:
    """Binary tournaments, uniform crossover and random-reset mutation, one child at a time.
    Each child's draws are three calls that consume the generator exactly as the seven of the
    textbook loop (two tournaments of two, two vectors of coin flips, one reset value per gene,
    drawn whether or not the gene mutates): numpy draws an array of bounded integers or of
    floats as the same calls one by one would, so a seed gives the same run as before."""
    if _raw_draws_match():
        state = rng.bit_generator.state
        children = _offspring_from_raw(genomes, ranks, crowd, sizes, rng)
        if children is not None:
            return children
        rng.bit_generator.state = state  # a draw the raw form does not follow: the calls themselves
    return _offspring_by_calls(genomes, ranks, crowd, sizes, rng)


@lru_cache(maxsize=1)
def _raw_draws_match() -> bool:
    """Whether this numpy's generator calls consume raw words as ``_offspring_from_raw`` reads
    them (checked once per process on a few generations that carry a held half-word across
    children and include a gene of one value); where not, the calls are made."""
    genomes = np.arange(21 * 4).reshape(21, 4) % 3
    ranks, crowd = (np.arange(21) % 4).astype(float), np.linspace(0, 2, 21)
    ours, theirs = np.random.default_rng(7), np.random.default_rng(7)
    for sizes in ([3, 1, 7, 5], [2, 9, 1, 1], [3, 1, 7, 5]):
        now = _offspring_from_raw(genomes, ranks, crowd, np.array(sizes), ours)
        before = _offspring_by_calls(genomes, ranks, crowd, np.array(sizes), theirs)
        if now is None or now.tolist() != before.tolist() or ours.bit_generator.state != theirs.bit_generator.state:
            return False
    return True


def _offspring_by_calls(genomes: np.ndarray, ranks: np.ndarray, crowd: np.ndarray, sizes: np.ndarray,
                        rng: np.random.Generator) -> np.ndarray:
    """``_offspring``, one child at a time through the generator's own calls."""
    n, genes = genomes.shape
    rank_of, crowd_of = ranks.tolist(), crowd.tolist()  # Python floats: no numpy scalar per read
    parents = genomes.tolist()
    rate = 1.0 / genes
    children = []
    for _ in range(n):
        a, b, c, d = rng.integers(n, size=4).tolist()
        mother = parents[a if (rank_of[a], -crowd_of[a]) <= (rank_of[b], -crowd_of[b]) else b]
        father = parents[c if (rank_of[c], -crowd_of[c]) <= (rank_of[d], -crowd_of[d]) else d]
        flips = rng.random(2 * genes).tolist()
        resets = rng.integers(sizes).tolist()
        children.append([r if flips[genes + k] < rate else (m if flips[k] < 0.5 else f)
                         for k, (m, f, r) in enumerate(zip(mother, father, resets))])
    return np.array(children, dtype=genomes.dtype).reshape(n, genes)


_U32 = 2**32


def _offspring_from_raw(genomes: np.ndarray, ranks: np.ndarray, crowd: np.ndarray, sizes: np.ndarray,
                        rng: np.random.Generator) -> np.ndarray | None:
    """``_offspring_by_calls``'s children from one block of the generator's raw 64-bit words,
    consumed as its three calls per child consume them (numpy 2, PCG64): ``random(k)`` takes k
    words, each ``(w >> 11) * 2**-53``; ``integers(n, size=4)`` and ``integers(sizes)`` take
    32-bit halves from the generator's half-word buffer (a new word's low half, its high half
    kept for the next such draw, across calls and children), one per tournament entrant and
    one per gene of more than one value (none for a gene of one value).  A 32-bit draw becomes
    a bounded integer by Lemire's rule, which draws again when the low product falls under a
    threshold; a block where that happens is not followed here (None: the caller restores the
    generator and makes the calls).  The generator is left as the calls leave it."""
    n, genes = genomes.shape
    sizes = np.asarray(sizes, dtype=np.int64)
    if (not isinstance(rng.bit_generator, np.random.PCG64) or not 1 < n < _U32 - 1
            or np.any(sizes < 1) or np.any(sizes >= _U32 - 1)):
        return None
    drawn = np.flatnonzero(sizes > 1)  # genes whose reset takes a 32-bit draw
    per_child = 4 + len(drawn)  # 32-bit draws per child: four entrants, then the resets
    state = rng.bit_generator.state
    held = int(state["has_uint32"])  # a high half left in the buffer by an earlier draw
    halves_drawn = n * per_child
    words = -(-(halves_drawn - held) // 2)  # new words the 32-bit draws take
    # The w-th such word is taken by the draw (held + 2w): its child, and whether that child
    # takes it among its entrants (before its coin words) or its resets (after them).
    draw = held + 2 * np.arange(words)
    child, late = draw // per_child, (draw % per_child) >= 4
    early_count = np.bincount(child[~late], minlength=n)
    late_count = np.bincount(child[late], minlength=n)
    start = np.concatenate([[0], np.cumsum(early_count + 2 * genes + late_count)[:-1]])
    group = 2 * child + late
    within = np.arange(words) - np.searchsorted(group, group)
    position = start[child] + np.where(late, early_count[child] + 2 * genes, 0) + within
    raw = rng.bit_generator.random_raw(int(start[-1] + early_count[-1] + 2 * genes + late_count[-1]))
    raw = raw.astype(np.uint64)
    low = np.uint64(0xFFFFFFFF)
    taken = raw[position]
    stream = np.stack([taken & low, taken >> np.uint64(32)], axis=1).ravel()
    if held:
        stream = np.concatenate([np.array([state["uinteger"]], dtype=np.uint64), stream])
    draws = stream[:halves_drawn].reshape(n, per_child)
    bounds = np.concatenate([np.full(4, n), sizes[drawn]]).astype(np.uint64)
    product = draws * bounds
    if np.any((product & low) < (np.uint64(_U32) - bounds) % bounds):
        return None
    values = (product >> np.uint64(32)).astype(np.int64)
    coins = (raw[start[:, None] + early_count[:, None] + np.arange(2 * genes)] >> np.uint64(11)) \
        * (1.0 / 9007199254740992.0)
    resets = np.zeros((n, genes), dtype=np.int64)
    resets[:, drawn] = values[:, 4:]
    # binary tournaments: ``(rank, -crowd)`` compared as Python compares the two tuples (the
    # first unequal element decides; NaN equals nothing, so it decides and compares false)
    rank, crowding = ranks.astype(float), -crowd.astype(float)

    def winner(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        first = np.where(rank[a] != rank[b], rank[a] <= rank[b],
                         np.where(crowding[a] != crowding[b], crowding[a] <= crowding[b], True))
        return np.where(first | (a == b), a, b)

    mother = genomes[winner(values[:, 0], values[:, 1])]
    father = genomes[winner(values[:, 2], values[:, 3])]
    children = np.where(coins[:, genes:] < 1.0 / genes, resets, np.where(coins[:, :genes] < 0.5, mother, father))
    state = rng.bit_generator.state
    state["has_uint32"] = (halves_drawn - held) % 2
    state["uinteger"] = int(taken[-1] >> np.uint64(32))
    rng.bit_generator.state = state
    return children.astype(genomes.dtype, copy=False).reshape(n, genes)
