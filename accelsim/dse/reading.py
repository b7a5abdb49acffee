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


# Rows whose front is taken at a time.  The front of (the front so far + the next rows) is the
# front of all of them (dominance is transitive: a row dominated within the earlier rows is
# dominated by a row of their front), so the sweep's temporaries stay the size of a batch.
FRONT_BATCH = 65_536


def read(frame: pd.DataFrame, objectives: Mapping[str, str], conditions: list[Condition],
         batch: int = FRONT_BATCH) -> Reading:
    feasible = np.array(frame["status"].eq(STATUS_OK), dtype=bool)
    for c in conditions:
        feasible &= c.holds(frame[c.metric].astype(float)).fillna(False).to_numpy(dtype=bool)
    columns = [frame[m].to_numpy(dtype=float) for m in objectives]
    senses = list(objectives.values())
    kept = np.empty(0, dtype=np.intp)
    kept_values = np.empty((0, len(columns)))
    for start in range(0, len(frame), batch):
        rows = start + np.flatnonzero(feasible[start:start + batch])
        if not len(rows):
            continue
        values = np.vstack([kept_values, pareto.oriented([c[rows] for c in columns], senses)])
        positions = np.concatenate([kept, rows])
        on_front = pareto.pareto_mask(values)
        kept, kept_values = positions[on_front], values[on_front]
    front = np.zeros(len(frame), dtype=bool)
    front[kept] = True
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
