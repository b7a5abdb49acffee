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
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
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
    draws = [(p.key, p.sampler()) for p in space.parameters]
    for _ in range(samples):
        yield {key: draw(rng) for key, draw in draws}


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
    """Evolve ``population`` designs for about ``samples`` evaluations; return every row seen."""
    rng = np.random.default_rng(seed)
    choices = [p.grid() for p in space.parameters]
    population = max(4, min(population, samples))
    genomes = np.column_stack([rng.integers(len(c), size=population) for c in choices])

    def decode(genes: np.ndarray) -> dict[str, Any]:
        return {p.key: c[int(g)] for p, c, g in zip(space.parameters, choices, genes)}

    seen: dict[tuple, dict[str, Any]] = {}

    def score(batch: np.ndarray) -> list[dict[str, Any]]:
        fresh = [g for g in {tuple(g) for g in batch} if g not in seen]
        fresh.sort()
        for g, row in zip(fresh, evaluate([decode(np.array(g)) for g in fresh])):
            seen[g] = row
        return [seen[tuple(g)] for g in batch]

    rows = score(genomes)
    generations = max(1, samples // population - 1)
    for _ in range(generations):
        ranks, crowd = _rank(rows, objectives, conditions)
        children = _offspring(genomes, ranks, crowd, [len(c) for c in choices], rng)
        merged = np.vstack([genomes, children])
        merged_rows = rows + score(children)
        ranks, crowd = _rank(merged_rows, objectives, conditions)
        order = np.lexsort((-crowd, ranks))[:population]
        genomes, rows = merged[order], [merged_rows[i] for i in order]
    return list(seen.values())


def _rank(rows, objectives, conditions) -> tuple[np.ndarray, np.ndarray]:
    viol = np.array([violation(r, conditions) for r in rows])
    finite = np.where(np.isfinite(viol), viol, np.nanmax(np.where(np.isfinite(viol), viol, 0)) + 1e9)
    values = np.array([[(r.get(m) if r.get("status") == STATUS_OK else 0.0) for m in objectives]
                       for r in rows], dtype=float)
    values = pareto.oriented(list(values.T), list(objectives.values()))
    ranks = pareto.constrained_ranks(values, finite)
    crowd = np.zeros(len(rows))
    for r in np.unique(ranks):
        members = np.flatnonzero(ranks == r)
        crowd[members] = pareto.crowding_distance(values[members])
    return ranks, crowd


def _offspring(genomes, ranks, crowd, sizes, rng) -> np.ndarray:
    n, genes = genomes.shape
    rank_of, crowd_of = ranks.tolist(), crowd.tolist()  # Python floats: no numpy scalar per read

    def tournament() -> np.ndarray:
        a, b = rng.integers(n, size=2).tolist()
        better = a if (rank_of[a], -crowd_of[a]) <= (rank_of[b], -crowd_of[b]) else b
        return genomes[better]

    children = []
    for _ in range(n):
        mother, father = tournament(), tournament()
        child = np.where(rng.random(genes) < 0.5, mother, father)
        mutate = rng.random(genes) < 1.0 / genes
        child = np.where(mutate, [rng.integers(s) for s in sizes], child)
        children.append(child)
    return np.array(children)
