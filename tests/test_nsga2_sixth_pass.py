"""Issue 20, sixth pass on NSGA-II: each replacement is checked against the definition it
replaces -- the fronts of one sweep against peeling with ``dominates`` and against the
dominance matrix, and the survivors' ranks against ranking the survivors afresh -- with ties,
duplicates, infinities and NaN rows as the ranking treats them."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from accelsim.dse import pareto, search

# Crowding distances over infinite objectives are NaN (inf - inf), as before this pass: numpy's
# warning about it is not what these tests check.
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

# Few distinct values, so ties and duplicate rows are common; NaN and infinities among them.
_VALUE = st.sampled_from([0.0, -0.0, 1.0, 2.0, 2.5, 7.0, np.inf, -np.inf, np.nan])


def _matrix(rows: int, objectives: int) -> st.SearchStrategy[np.ndarray]:
    return st.lists(st.lists(_VALUE, min_size=objectives, max_size=objectives),
                    min_size=rows, max_size=rows).map(lambda v: np.array(v, dtype=float).reshape(rows, objectives))


def _peeled(values: np.ndarray) -> list[int]:
    """The definition: front k is the points no point still left dominates."""
    left = list(range(len(values)))
    ranks = [-1] * len(values)
    front = 0
    while left:
        now = [j for j in left if not any(pareto.dominates(values[i], values[j]) for i in left)]
        for j in now:
            ranks[j] = front
        left = [j for j in left if j not in now]
        front += 1
    return ranks


@settings(max_examples=400, deadline=None)
@given(st.integers(1, 25).flatmap(lambda n: st.integers(1, 3).flatmap(lambda m: _matrix(n, m))))
def test_sweep_ranks_equal_the_definition(values: np.ndarray) -> None:
    assert pareto.non_dominated_ranks(values).tolist() == _peeled(values)
    assert pareto._ranks_by_sweep(values).tolist() == pareto._ranks_by_matrix(values).tolist()


@settings(max_examples=40, deadline=None)
@given(n=st.integers(50, 700), m=st.integers(1, 3), levels=st.integers(2, 40), seed=st.integers(0, 2**32 - 1))
def test_sweep_ranks_equal_the_matrix_on_larger_sets(n: int, m: int, levels: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    values = rng.integers(0, levels, size=(n, m)).astype(float)
    values[:, -1] -= values[:, :-1].sum(axis=1)  # anti-correlated: many fronts, many ties
    values[rng.random((n, m)) < 0.02] = np.nan
    assert pareto.non_dominated_ranks(values).tolist() == pareto._ranks_by_matrix(values).tolist()


def test_sweep_ranks_hand_worked() -> None:
    values = np.array([[1, 3], [2, 2], [3, 1], [2, 3], [3, 3], [2, 2], [np.nan, 0], [4, 4]], dtype=float)
    # front 0: the staircase (and its copy of (2, 2), and the NaN row); (2,3) is dominated by
    # (2,2); (3,3) by (2,3); (4,4) by (3,3)
    assert pareto.non_dominated_ranks(values).tolist() == [0, 0, 0, 1, 2, 0, 0, 3]


_VIOLATION = st.sampled_from([0.0, 0.0, 0.0, 0.5, 1.0, 1.0, 3.0, 1e300, np.inf, np.nan])


@settings(max_examples=300, deadline=None)
@given(st.integers(2, 40).flatmap(lambda n: st.tuples(
    st.lists(_VIOLATION, min_size=n, max_size=n), st.integers(1, 3).flatmap(lambda m: _matrix(n, m)),
    st.integers(1, n), st.lists(st.sampled_from(["min", "max"]), min_size=3, max_size=3))))
def test_survivor_ranks_equal_ranking_the_survivors(case: tuple) -> None:
    violations, objectives, population, senses = case
    viol = np.array(violations, dtype=float)
    senses = senses[:objectives.shape[1]]
    ranks, crowd = search._rank(viol, objectives, senses)
    order = np.lexsort((-crowd, ranks))[:population]  # NSGA-II's survivors
    fresh, fresh_crowd = search._rank(viol[order], objectives[order], senses)
    kept = search.survivor_ranks(ranks, order)
    assert kept.tolist() == fresh.tolist()
    _, known_crowd = search._rank(viol[order], objectives[order], senses, kept)
    assert np.array_equal(known_crowd, fresh_crowd, equal_nan=True)
