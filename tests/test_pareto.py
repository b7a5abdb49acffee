"""The fast Pareto front equals the O(n^2) definition on random sets, ties and gaps included."""
from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from accelsim.dse import pareto


def _definition(values: np.ndarray) -> np.ndarray:
    """Kept when no other row is no worse everywhere and strictly better somewhere."""
    keep = np.ones(len(values), dtype=bool)
    for i in range(len(values)):
        no_worse = np.all(values <= values[i], axis=1)
        better = np.any(values < values[i], axis=1)
        keep[i] = not np.any(no_worse & better)
    return keep


# Small integer levels make ties and exact duplicates common (as grid sweeps produce them);
# infinities and NaNs stand for failed metrics.
_cells = st.one_of(st.integers(-4, 4).map(float), st.floats(-1e6, 1e6, allow_nan=False),
                   st.sampled_from([np.inf, -np.inf, np.nan]))


@st.composite
def _objective_sets(draw):
    k = draw(st.integers(1, 6))
    n = draw(st.integers(0, 200))
    return draw(hnp.arrays(float, (n, k), elements=_cells))


@settings(max_examples=100, deadline=None)
@given(_objective_sets())
def test_front_equals_the_definition(values):
    assert pareto.pareto_mask(values).tolist() == _definition(values).tolist()


@settings(max_examples=12, deadline=None)
@given(st.integers(2, 5), st.integers(0, 2**32 - 1))
def test_front_equals_the_definition_on_larger_continuous_sets(k, seed):
    rng = np.random.default_rng(seed)
    # Anti-correlated objectives give large fronts, the hard case for the skyline.
    base = rng.random((800, 1))
    values = np.hstack([base, 1 - base + 0.05 * rng.random((800, k - 1))])
    values[:, 1:] += 0.02 * rng.standard_normal((800, k - 1))
    assert pareto.pareto_mask(values).tolist() == _definition(values).tolist()


def test_ranks_peel_fronts_in_order():
    values = np.array([[1, 3], [2, 2], [3, 1], [2, 3], [3, 3], [3, 3]], dtype=float)
    assert pareto.non_dominated_ranks(values).tolist() == [0, 0, 0, 1, 2, 2]
