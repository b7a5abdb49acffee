"""Arithmetic that works on one design point (Python numbers) and on many at once (numpy arrays).

The cost formulas of every hardware kind are written once, with these helpers, and called both
by the scalar backends (one chip) and by the design-space fast path (``accelsim.dse.fastpath``,
one array element per design point).  On plain numbers the helpers fall back to ``math``/builtins
so the scalar path keeps its exact int/float types (cycle counts stay ints, labels stay tidy).
"""
from __future__ import annotations

import math
from functools import reduce
from typing import Any

import numpy as np


def _is_array(*values: Any) -> bool:
    # A plain loop: called for every term of every op and mapping, where a generator's setup
    # cost more than the test.
    for v in values:
        if isinstance(v, np.ndarray):
            return True
    return False


def ceil_div(a, b):
    """ceil(a / b), elementwise when either side is an array."""
    return np.ceil(a / b) if _is_array(a, b) else math.ceil(a / b)


def ceil(a):
    return np.ceil(a) if _is_array(a) else math.ceil(a)


def vmax(*values):
    """Largest of the arguments, elementwise over arrays."""
    return reduce(np.maximum, values) if _is_array(*values) else max(values)


def vmin(*values):
    return reduce(np.minimum, values) if _is_array(*values) else min(values)


def where(condition, if_true, if_false):
    """``if_true if condition else if_false``, elementwise when the condition is an array."""
    if _is_array(condition):
        return np.where(condition, if_true, if_false)
    return if_true if condition else if_false


def nonzero(values: dict[str, Any]) -> dict[str, Any]:
    """Drop entries that are zero on a single design point (array entries are kept whole)."""
    return {k: v for k, v in values.items() if _is_array(v) or v}


def sqrt(a):
    return np.sqrt(a) if _is_array(a) else math.sqrt(a)


def exp(a):
    return np.exp(a) if _is_array(a) else math.exp(a)


def safe_divisor(a, bad):
    """``a`` with 1 wherever ``bad`` holds, so a division whose result ``where`` discards there
    neither raises (numbers: ``where`` evaluates both branches) nor warns (arrays)."""
    if _is_array(a, bad):
        return np.where(bad, 1.0, a)
    return 1.0 if bad else a
