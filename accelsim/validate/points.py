"""Validation points: measured rows mapped to what accelsim simulates, read from ``validation/``.

``points.yaml`` names, for each predictable row of ``measured_inference.csv`` / ``kernels.csv``,
the model, hardware config, dtype and workload; the measured value itself is read from the CSV row
(never retyped), after checking the row still says what the point expects.
"""
from __future__ import annotations

import csv
import hashlib
from functools import cached_property
from pathlib import Path
from typing import Literal, get_args

from pydantic import Field, model_validator

from accelsim.config import loader
from accelsim.config.types import PositiveInt, Spec
from accelsim.errors import ConfigError
from accelsim.sim.runtime import RuntimeGpu, RuntimePreset

VALIDATION_DIR = loader.PACKAGE_ROOT.parent / "validation"
DEFAULT_POINTS = VALIDATION_DIR / "points.yaml"

Kind = Literal["static_batch", "ttft", "tpot", "decode_steps", "interactivity", "gemm", "bandwidth"]
Metric = Literal["decode_throughput", "mixed_throughput", "prefill_throughput", "ttft", "tpot",
                 "gemm_throughput", "bandwidth"]
Subset = Literal["smoke", "calibration", "holdout", "preliminary", "all"]
SUBSETS: tuple[str, ...] = get_args(Subset)

# Measured units -> (SI factor, SI unit).  Per-GPU throughput is the same unit per chip.
UNITS: dict[str, tuple[float, str]] = {
    "tokens/s": (1.0, "tokens/s"), "tokens/s/GPU": (1.0, "tokens/s"), "ms": (1e-3, "s"),
    "ms/token": (1e-3, "s"), "s": (1.0, "s"), "TFLOPS": (1e12, "FLOP/s"), "TB/s": (1e12, "B/s"),
}
# Units measured as a rate whose reciprocal is the predicted time: InferenceX's interactivity
# (tokens/s per user) is 1 / TPOT, so it is compared as seconds per output token.
RECIPROCAL_UNITS: dict[str, str] = {"tok/s/user": "s"}
# The measurement tables in validation/: two verbatim copies of shared/refdata, and TPU rows,
# TensorRT-LLM blog rows and TensorRT-LLM v0.9.0's performance tables collected for accelsim
# (validation/README.md).
MeasurementFile = Literal["measured_inference.csv", "kernels.csv", "measured_tpu.csv",
                          "measured_trtllm_blogs.csv", "measured_trtllm_v0.9.csv", "measured_2025.csv"]
MEASUREMENT_FILES: tuple[str, ...] = get_args(MeasurementFile)


class RowRef(Spec):
    file: MeasurementFile
    row: PositiveInt  # 1-based data row (the header is row 0)


class GemmShape(Spec):
    m: PositiveInt
    n: PositiveInt
    k: PositiveInt


class StreamKernel(Spec):
    """A BabelStream kernel: arrays read and written per element, arithmetic per element."""

    reads: int = Field(ge=1)
    writes: int = Field(ge=0)
    ops_per_element: float = Field(ge=0)


class Runtime(Spec):
    """Kernel-library facts of the software that produced a measurement: applied to the hardware
    config for that row's prediction only.  Never fitted, except that a runtime marked ``fitted``
    has its ``gpu.attention_bandwidth`` fitted by its chips' family calibration (``accelsim
    calibrate --family``) on the calibration points that name it, and on nothing else: a
    kernel no other row ran, whose speed no public figure states (docs/validation.md)."""

    gpu: RuntimeGpu
    fitted: bool = False
    source: str = Field(min_length=3)

    @model_validator(mode="after")
    def _fits_what_it_sets(self):
        if self.fitted and self.gpu.attention_bandwidth is None:
            raise ValueError("a fitted runtime needs gpu.attention_bandwidth (its start value)")
        return self


class Point(Spec):
    id: str = Field(min_length=3)
    source: RowRef
    expect: dict[str, str]
    kind: Kind
    metric: Metric
    hw: str
    model: str | None = None
    dtype: Literal["fp8", "fp16", "bf16"] | None = None
    # weight-only quantisation (int8) or block-scaled weights (nvfp4 / mxfp4 checkpoints); else ``dtype``
    weight_dtype: Literal["int8", "nvfp4", "mxfp4"] | None = None
    # block-scaled activations (an FP4 checkpoint quantises the linear layers' inputs too); else
    # ``dtype``, which the KV cache keeps
    act_dtype: Literal["nvfp4", "mxfp4"] | None = None
    chips: PositiveInt = 1
    # Expert parallelism and attention data parallelism of the chips (``Parallelism.ep`` / ``dp``):
    # tensor parallelism is then chips / dp_attn.
    ep: PositiveInt = 1
    dp_attn: PositiveInt = 1
    # An interactivity point from a serving run whose prompts are prefilled on the same chips
    # between decode steps (aggregated serving); False for a disaggregated decode pool.
    prefill_interleaved: bool = True
    # Points of a chip family (``PointsFile.families``) whose half is set by a rule written down
    # before fitting (by source or model, docs/validation.md), not by the size alternation.
    split: Literal["calibration", "holdout"] | None = None
    tp_x: PositiveInt = 1  # the chips as a 2D weight-stationary grid of tp_x x chips/tp_x
    attention: Literal["heads", "batch"] = "heads"  # attention sharding (accelsim.transform)
    batch: PositiveInt | None = None
    input_len: PositiveInt | None = None
    output_len: PositiveInt | None = None
    per_chip: bool = False
    runtime: str | None = None  # a key of the points file's ``runtimes``
    # The publisher calls the measurement preliminary (pre-release chip or software): predicted and
    # reported in its own split, never fitted and never held to the bound.
    preliminary: bool = False
    gemm: GemmShape | None = None
    stream: StreamKernel | None = None

    @model_validator(mode="after")
    def _fields_for_kind(self):
        needed = {"static_batch": ("model", "dtype", "batch", "input_len", "output_len"),
                  "ttft": ("model", "dtype", "batch", "input_len"),
                  "tpot": ("model", "dtype", "batch", "input_len"),
                  "decode_steps": ("model", "dtype", "batch", "input_len", "output_len"),
                  "interactivity": ("model", "dtype", "batch", "input_len", "output_len"),
                  "gemm": ("dtype", "gemm"), "bandwidth": ("stream",)}[self.kind]
        missing = [name for name in needed if getattr(self, name) is None]
        if missing:
            raise ValueError(f"kind '{self.kind}' needs {', '.join(missing)}")
        return self

    @property
    def hash_key(self) -> str:
        """A stable pseudo-random key: breaks ties between points of the same size."""
        return hashlib.sha256(self.id.encode()).hexdigest()

    @property
    def work(self) -> int:
        """The size the point's fixed and proportional costs are told apart by: tokens a prefill
        or static batch processes, multiply-accumulates of a GEMM (0 for a stream kernel, whose
        size is fixed)."""
        if self.gemm is not None:
            return self.gemm.m * self.gemm.n * self.gemm.k
        if self.kind == "bandwidth":
            return 0
        return self.sized("batch") * (self.sized("input_len") + (self.output_len or 0))

    def sized(self, name: Literal["batch", "input_len", "output_len"]) -> int:
        """A size its kind requires (``_fields_for_kind`` refused the point without it)."""
        value = getattr(self, name)
        if value is None:
            raise ValueError(f"point {self.id}: kind '{self.kind}' has no {name}")
        return int(value)


class Unpredictable(Spec):
    file: MeasurementFile
    rows: list[PositiveInt]
    reason: str = Field(min_length=3)


class PointsFile(Spec):
    smoke: list[str] = Field(default_factory=list)
    # Chip families calibrated together: one set of constants fitted on the family's calibration
    # points and written to every member's config (``accelsim calibrate --family``).
    families: dict[str, list[str]] = Field(default_factory=dict)
    runtimes: dict[str, Runtime] = Field(default_factory=dict)
    points: list[Point]
    not_predictable: list[Unpredictable] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique(self):
        ids = [p.id for p in self.points]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"duplicate point ids: {', '.join(dupes)}")
        unknown = sorted(set(self.smoke) - set(ids))
        if unknown:
            raise ValueError(f"smoke names unknown point ids: {', '.join(unknown)}")
        known = set(self.runtimes) | set(loader.bundled_names("runtimes"))
        for p in self.points:
            if p.runtime is not None and p.runtime not in known:
                raise ValueError(f"point {p.id}: runtime {p.runtime!r} is neither one of the file's runtimes "
                                 f"nor a bundled preset ({', '.join(sorted(known))})")
        return self


class Measured(Spec):
    """A point's measured value in SI units, with the row's provenance."""

    value: float
    unit: str
    status: str
    source_url: str


class Catalogue:
    """The points file plus the CSV rows it refers to."""

    def __init__(self, points_path: Path = DEFAULT_POINTS):
        self.path = Path(points_path)
        self.spec = loader.validate(PointsFile, loader.read_document(self.path), str(self.path))
        self.folder = self.path.parent

    @cached_property
    def rows(self) -> dict[str, list[dict[str, str]]]:
        tables = {}
        for name in MEASUREMENT_FILES:
            path = self.folder / name
            try:
                with path.open(encoding="utf-8", newline="") as handle:
                    tables[name] = list(csv.DictReader(handle))
            except OSError as err:
                raise ConfigError(f"cannot read measurements ({err.strerror})", source=str(path)) from None
        return tables

    @property
    def points(self) -> list[Point]:
        return self.spec.points

    def runtime(self, point: Point) -> Runtime | RuntimePreset | None:
        """The software that measured ``point``: a historical engine version's kernel settings from
        the points file's ``runtimes``, or a bundled serving preset (``runtimes/``) by name."""
        if point.runtime is None:
            return None
        if point.runtime in self.spec.runtimes:
            return self.spec.runtimes[point.runtime]
        path = loader.bundled_names("runtimes")[point.runtime]
        return loader.validate(RuntimePreset, loader.read_document(path), str(path))

    def row(self, ref: RowRef) -> dict[str, str]:
        table = self.rows[ref.file]
        if ref.row > len(table):
            raise ConfigError(f"row {ref.row} is past the end ({len(table)} rows)",
                              source=str(self.folder / ref.file))
        return table[ref.row - 1]

    def measured(self, point: Point) -> Measured:
        row = self.row(point.source)
        for column, expected in point.expect.items():
            if row.get(column) != expected:
                raise ConfigError(f"point {point.id}: {point.source.file} row {point.source.row} has "
                                  f"{column}={row.get(column)!r}, points.yaml expects {expected!r}",
                                  source=str(self.path))
        if row["unit"] not in UNITS and row["unit"] not in RECIPROCAL_UNITS:
            raise ConfigError(f"point {point.id}: unit {row['unit']!r} not one of "
                              f"{', '.join([*UNITS, *RECIPROCAL_UNITS])}", source=str(self.path))
        try:
            number = float(row["value"])
        except ValueError:
            raise ConfigError(f"point {point.id}: value {row['value']!r} is not a number",
                              source=str(self.path)) from None
        if row["unit"] in RECIPROCAL_UNITS:
            value, unit = 1.0 / number, RECIPROCAL_UNITS[row["unit"]]
        else:
            factor, unit = UNITS[row["unit"]]
            value = number * factor
        # measured_2025.csv names its provenance column ``source``, the older tables ``source_url``.
        url = row.get("source_url") or row.get("source", "")
        return Measured(value=value, unit=unit, status=row["status"], source_url=url)


def split(points: list[Point]) -> dict[str, str]:
    """Calibration / holdout assignment, deterministic, disjoint and stratified by size.

    Within each (hardware, metric, chip count) stratum the points are ordered by work (tokens or
    MACs, ``Point.work``), then by a hash of their id, and alternate calibration, holdout,
    calibration, ...  A stratum per chip count halves each chip count on its own, so a point added
    to one stratum leaves the others' halves alone (one alternation over all chip counts let a new
    single-chip row flip every TP row).  Ordering by size before alternating puts short and long
    prompts, small and large GEMMs in both halves, so a fixed cost (per request, per kernel) and a
    proportional one (compute, bandwidth) are both identifiable from the calibration half and
    both checked on the holdout; a pure hash order once gave one chip's TTFT calibration half
    only 2048-token prompts.  A group of one point goes to calibration.  The split is over every
    mapped point, so it does not move when some become (un)predictable.  Preliminary points form
    a third part of their own, outside the alternation.
    """
    groups: dict[tuple[str, str, int], list[Point]] = {}
    assignment = {p.id: "preliminary" for p in points if p.preliminary}
    # A family point's half is set by its rule (by source or model), never by alternation.
    assignment.update({p.id: p.split for p in points if p.split is not None and not p.preliminary})
    for p in points:
        if not p.preliminary and p.split is None:
            groups.setdefault((p.hw, p.metric, p.chips), []).append(p)
    for members in groups.values():
        for index, p in enumerate(sorted(members, key=lambda q: (q.work, q.hash_key))):
            assignment[p.id] = "calibration" if index % 2 == 0 else "holdout"
    return assignment


def select(catalogue: Catalogue, subset: str) -> list[Point]:
    if subset not in SUBSETS:
        raise ConfigError(f"--subset {subset!r} not one of {', '.join(SUBSETS)}")
    if subset == "all":
        return list(catalogue.points)
    if subset == "smoke":
        chosen = set(catalogue.spec.smoke)
        return [p for p in catalogue.points if p.id in chosen]
    assignment = split(catalogue.points)
    return [p for p in catalogue.points if assignment[p.id] == subset]
