"""Systolic compute cycles against hand-worked counts and SCALE-Sim's reported values."""
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from accelsim.hardware.systolic import folds, scalesim_cycles


@pytest.mark.parametrize("m, k, n, rows, cols, dataflow, expected", [
    # Hand-worked on a 4x4 array, M=5, K=3, N=6:
    # OS pins outputs: ceil(5/4)*ceil(6/4)=4 folds of (K + R + C - 2) = 9 cycles -> 36, minus 1.
    (5, 3, 6, 4, 4, "os", 35),
    # WS pins weights (K x N): ceil(3/4)*ceil(6/4)=2 folds of (2R + C + M - 2) = 15 -> 30, minus 1.
    (5, 3, 6, 4, 4, "ws", 29),
    # IS pins inputs (K x M): ceil(3/4)*ceil(5/4)=2 folds of (2R + C + N - 2) = 16 -> 32, minus 1.
    (5, 3, 6, 4, 4, "is", 31),
    # Non-square 2x8 array, M=K=N=8: OS 4*1 folds of (8+2+8-2)=16 -> 63; WS 4*1 of (4+8+8-2)=18 -> 71.
    (8, 8, 8, 2, 8, "os", 63),
    (8, 8, 8, 2, 8, "ws", 71),
    (8, 8, 8, 2, 8, "is", 71),
    # SCALE-Sim v3's reported values (shared/PEERS.md).
    (256, 256, 256, 128, 128, "os", 2039),
    (256, 256, 256, 128, 128, "ws", 2551),
    (256, 256, 256, 128, 128, "is", 2551),
    (1, 4096, 4096, 128, 128, "os", 139199),
    (1, 4096, 4096, 128, 128, "ws", 392191),
    (1, 4096, 4096, 128, 128, "is", 143295),
])
def test_compute_cycles(m, k, n, rows, cols, dataflow, expected):
    assert scalesim_cycles(m, k, n, rows, cols, dataflow) == expected


dims = st.integers(min_value=1, max_value=600)
arrays = st.integers(min_value=1, max_value=64)


@given(dims, dims, dims, arrays, arrays, st.sampled_from(["os", "ws", "is"]))
def test_cycles_never_beat_the_mac_bound(m, k, n, rows, cols, dataflow):
    cycles = scalesim_cycles(m, k, n, rows, cols, dataflow) + 1
    assert cycles >= math.ceil(m * k * n / (rows * cols))
    f = folds(m, k, n, rows, cols, dataflow)
    assert 0 < f.mapping_efficiency <= 1


@given(dims, dims, dims, arrays, arrays, st.sampled_from(["os", "ws", "is"]))
def test_cycles_grow_with_every_dimension(m, k, n, rows, cols, dataflow):
    base = scalesim_cycles(m, k, n, rows, cols, dataflow)
    assert scalesim_cycles(m + 1, k, n, rows, cols, dataflow) >= base
    assert scalesim_cycles(m, k + 1, n, rows, cols, dataflow) >= base
    assert scalesim_cycles(m, k, n + 1, rows, cols, dataflow) >= base
