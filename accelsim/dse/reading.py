"""Reading a finished sweep as columns: which designs are feasible, the Pareto front among them
(computed once, then shared by the command's summary and the report) and the design a target
asks for.  The row-by-row equivalents in ``search`` serve NSGA-II's small generations."""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from accelsim.dse import pareto
from accelsim.dse.metrics import STATUS_OK
from accelsim.dse.space import Condition


@dataclass(frozen=True)
class Reading:
    """Per row of ``frame``: feasible (ran, and meets every condition) and on the front (a
    feasible design no other feasible design dominates)."""

    frame: pd.DataFrame
    feasible: np.ndarray
    front: np.ndarray


def read(frame: pd.DataFrame, objectives: Mapping[str, str], conditions: list[Condition]) -> Reading:
    feasible = np.array(frame["status"].eq(STATUS_OK), dtype=bool)
    for c in conditions:
        feasible &= c.holds(frame[c.metric].astype(float)).fillna(False).to_numpy(dtype=bool)
    front = np.zeros(len(frame), dtype=bool)
    rows = np.flatnonzero(feasible)
    if len(rows):
        values = pareto.oriented([frame[m].to_numpy(dtype=float)[rows] for m in objectives],
                                 list(objectives.values()))
        front[rows[pareto.pareto_mask(values)]] = True
    return Reading(frame, feasible, front)


def pick(reading: Reading, metric: str, sense: str) -> int | None:
    """Position of the best design by ``metric`` on the front (or among the feasible designs
    when the front is empty); ties go to the first in file order.  None when nothing is feasible."""
    pool = np.flatnonzero(reading.front if reading.front.any() else reading.feasible)
    if not len(pool):
        return None
    return int(pool[best(reading.frame[metric].to_numpy(dtype=float)[pool], sense)])


def best(values: np.ndarray, sense: str) -> int:
    """Position of the least (``sense`` min) or greatest value, skipping NaN (a metric a design
    never reaches, such as a breakeven that never comes) -- np.argmin would return the first NaN;
    the first position when every value is NaN."""
    finite = ~np.isnan(values)
    if not finite.any():
        return 0
    return int(np.nanargmin(values) if sense == "min" else np.nanargmax(values))


def row(frame: pd.DataFrame, position: int) -> dict[str, Any]:
    """One row as the results CSV reads back: numbers as floats, gaps as None."""
    out: dict[str, Any] = {}
    for name, value in frame.iloc[position].items():
        if value is None or (isinstance(value, float) and math.isnan(value)):
            out[str(name)] = None
        elif isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
            out[str(name)] = float(value)
        else:
            out[str(name)] = value if value != "" else None
    return out
