"""NSGA-II after the speed work (issue 20) runs the same search as before for a fixed seed: the
reference below is the previous implementation, kept here verbatim as the oracle (row-by-row
ranking, seven generator calls per child).  Same points asked for, in the same batches, and
the same rows returned."""
from __future__ import annotations

import numpy as np
import pytest

from accelsim.dse import fastpath, pareto, search
from accelsim.dse.evaluate import Job
from accelsim.dse.metrics import STATUS_OK
from accelsim.dse.space import load_space
from accelsim.model.spec import load_model
from accelsim.workload import Workload


def _reference_nsga2(space, evaluate, objectives, conditions, samples, seed, population=32):
    rng = np.random.default_rng(seed)
    choices = [p.grid() for p in space.parameters]
    population = max(4, min(population, samples))
    genomes = np.column_stack([rng.integers(len(c), size=population) for c in choices])

    def decode(genes):
        return {p.key: c[int(g)] for p, c, g in zip(space.parameters, choices, genes)}

    seen = {}

    def score(batch):
        fresh = [g for g in {tuple(g) for g in batch} if g not in seen]
        fresh.sort()
        for g, row in zip(fresh, evaluate([decode(np.array(g)) for g in fresh])):
            seen[g] = row
        return [seen[tuple(g)] for g in batch]

    rows = score(genomes)
    for _ in range(max(1, samples // population - 1)):
        ranks, crowd = _reference_rank(rows, objectives, conditions)
        children = _reference_offspring(genomes, ranks, crowd, [len(c) for c in choices], rng)
        merged = np.vstack([genomes, children])
        merged_rows = rows + score(children)
        ranks, crowd = _reference_rank(merged_rows, objectives, conditions)
        order = np.lexsort((-crowd, ranks))[:population]
        genomes, rows = merged[order], [merged_rows[i] for i in order]
    return list(seen.values())


def _reference_rank(rows, objectives, conditions):
    viol = np.array([search.violation(r, conditions) for r in rows])
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


def _reference_offspring(genomes, ranks, crowd, sizes, rng):
    n, genes = genomes.shape

    def tournament():
        a, b = rng.integers(n, size=2)
        better = a if (ranks[a], -crowd[a]) <= (ranks[b], -crowd[b]) else b
        return genomes[better]

    children = []
    for _ in range(n):
        mother, father = tournament(), tournament()
        child = np.where(rng.random(genes) < 0.5, mother, father)
        mutate = rng.random(genes) < 1.0 / genes
        child = np.where(mutate, [rng.integers(s) for s in sizes], child)
        children.append(child)
    return np.array(children)


@pytest.mark.parametrize("name, seed, population, samples", [
    ("hardwired.yaml", 0, 16, 160), ("hardwired.yaml", 7, 5, 60), ("systolic.yaml", 3, 24, 200)])
def test_nsga2_asks_for_the_same_points_and_returns_the_same_rows(name, seed, population, samples):
    space = load_space(f"hw_configs/spaces/{name}")
    job = Job(space, load_model("llama-3.1-8b"), Workload(**space.spec.workload.model_dump()))
    # a constraint that some designs meet and some miss, so both ranking tiers are exercised
    conditions = [*space.constraints, *(c for c in [search.Condition.parse("tokens_per_s_per_user>=3000", "t")])]
    runs = []
    for nsga2 in (search.nsga2, _reference_nsga2):
        asked: list[list[dict]] = []

        def evaluate(points, asked=asked):
            asked.append(points)
            return fastpath.evaluate_points(job, points)
        rows = nsga2(space, evaluate, space.spec.objectives, conditions, samples, seed, population=population)
        runs.append((asked, rows))
    (asked, rows), (asked_before, rows_before) = runs
    assert asked == asked_before
    assert rows == rows_before
    assert len(asked) == max(1, samples // population - 1) + 1


def test_offspring_draws_as_the_seven_call_loop():
    rng_now, rng_before = np.random.default_rng(11), np.random.default_rng(11)
    genomes = np.random.default_rng(1).integers(0, 5, size=(40, 4))
    ranks = np.random.default_rng(2).integers(0, 4, size=40).astype(float)
    crowd = np.random.default_rng(3).random(40)
    crowd[::7] = np.inf
    sizes = [5, 1, 29, 100_000]
    for _ in range(5):
        now = search._offspring(genomes, ranks, crowd, np.array(sizes), rng_now)
        before = _reference_offspring(genomes, ranks, crowd, sizes, rng_before)
        assert now.tolist() == before.tolist()
