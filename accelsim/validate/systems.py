"""Per-user decode speeds of non-GPU systems against what was published
(``validation/measured_systems.csv``): third-party measurements (Artificial Analysis, observers
of a public demo) and vendor claims, each row marked.  Every mapping -- chips, the tensor /
pipeline split inside the system, weight precision, where the KV cache lives -- comes from the
row's cited source or from one stated default rule (the byte rule and split rule of
``hardware.dataflow``, the chip's own config); nothing is fitted per row.  Hosted services add
network and queueing time and may batch users, which a batch-1 step leaves out."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from statistics import median

import pandas as pd

from accelsim.api import simulate
from accelsim.config import loader
from accelsim.errors import ConfigError
from accelsim.transform import Parallelism
from accelsim.validate.points import VALIDATION_DIR
from accelsim.validate.predict import model_for
from accelsim.workload import Workload

DEFAULT_SYSTEM_POINTS = VALIDATION_DIR / "measured_systems.csv"
KINDS = ("third-party measurement", "vendor claim")
# calibration: the row a config's one calibrated figure was fitted on (chosen by source before
# fitting, docs/validation.md); design point: rows of a hypothetical chip whose unpublished
# figures (MAC count, SRAM) were chosen with that speed in view, so not an independent check;
# holdout: every other row.
SETS = ("calibration", "holdout", "design point")


@dataclass(frozen=True)
class SpeedPoint:
    subset: str  # one of SETS
    hw: str
    model: str
    weight_dtype: str
    chips: int | None
    context: int
    value: float  # tokens/s per user
    kind: str
    source: str


def load(path: Path | None = None) -> list[SpeedPoint]:
    path = path or DEFAULT_SYSTEM_POINTS
    points = []
    for i, row in enumerate(loader.read_csv(path, "system points"), start=2):
        try:
            point = SpeedPoint(row["set"], row["hw"], row["model"], row["weight_dtype"],
                               int(row["chips"]) if row["chips"] else None, int(row["context"]),
                               float(row["value"]), row["kind"], row["source"])
        except (KeyError, ValueError) as err:
            raise ConfigError(f"{path}: row {i}: {err}") from None
        if point.kind not in KINDS:
            raise ConfigError(f"{path}: row {i}: kind must be one of {', '.join(KINDS)}")
        if point.subset not in SETS:
            raise ConfigError(f"{path}: row {i}: set must be one of {', '.join(SETS)}")
        points.append(point)
    return points


def predict(point: SpeedPoint) -> tuple[float, int]:
    """(tokens/s per user at batch 1, chips used)."""
    layout = Parallelism.from_options(chips=point.chips) if point.chips else None
    r = simulate(model_for(point.model), point.hw, Workload("decode", batch=1, context=point.context),
                 weight_dtype=point.weight_dtype, parallelism=layout)
    return r.tokens_per_s_per_user, r.chips


def table(points: list[SpeedPoint]) -> pd.DataFrame:
    rows = []
    for p in points:
        predicted, chips = predict(p)
        rows.append({"set": p.subset, "hw": p.hw, "model": p.model, "weights": p.weight_dtype, "chips": chips,
                     "kind": p.kind, "measured": p.value, "predicted": predicted,
                     "error": predicted / p.value - 1.0})
    return pd.DataFrame(rows)


def median_abs_error(frame: pd.DataFrame, subset: str | None = None) -> float:
    """Median |error| over the rows of ``subset`` (every row when None)."""
    rows = frame if subset is None else frame[frame["set"] == subset]
    return median(rows["error"].abs().tolist())
