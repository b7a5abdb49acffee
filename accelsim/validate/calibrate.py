"""Fit each hardware config's efficiency constants on the calibration subset.

Per hardware config up to six constants are fitted, shared by every op and every point on it:
``efficiency.compute`` (achieved fraction of matrix/vector peak), ``efficiency.memory`` (achieved
fraction of each memory level's bandwidth), the per-op overhead (``gpu.launch_overhead`` /
``systolic.op_overhead``), the per-step host overhead (``gpu.`` / ``systolic.step_overhead``,
paid once per model step: a TTFT point has one step, a static batch ``output_len`` of them, a
single GEMM or stream kernel none -- which is what separates it from the per-op cost) and, on
GPUs, the per-request runtime overhead (``gpu.request_overhead``, paid once per TTFT point and
once per static-batch run, whatever its step count -- which separates it from the step
overhead) and, on GPUs, the fixed time of a wave of attention work units
(``gpu.attention_unit_overhead``: it grows with sequences x heads per step, not with bytes, which
separates a large batch of short contexts from a small batch of long ones with the same KV bytes).  The objective is the sum over the calibration points of
``log(predicted / measured)^2`` -- symmetric in over- and under-prediction and scale-free, so
a TFLOPS point and a millisecond point weigh the same.  No per-point factors exist.

The model is piecewise (``max`` of compute and memory time, tile waves), so the objective has
kinks: a coarse grid over the box picks the start and Nelder-Mead (scipy) refines it inside the
bounds.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np

from accelsim.api import resolve_hardware
from accelsim.errors import AccelsimError
from accelsim.validate.points import Catalogue, Point, Runtime, select
from accelsim.validate.predict import (
    Calibration,
    calibrated,
    current_calibration,
    has_attention_unit_overhead,
    has_request_overhead,
    predict,
    predict_measured,
    under_runtime,
)

# Search box: compute and memory are fractions of datasheet peaks; the overhead is a per-kernel
# gap, searched from zero to ten times the 2 us the configs assumed before calibration.  The step
# overhead is host time per forward step and is held to what a host can plausibly spend on one
# step (<= 0.5 ms, an assumption): left unbounded, the fit pushed it to 2.5-6 ms per step to soak
# up per-request costs of old TensorRT-LLM builds in the batch-1 TTFT rows, which then made every
# decode step ms slower than the weights-over-bandwidth floor allows (docs/validation.md).  Those
# per-request costs now have their own term, the request overhead, searched over 0-10 ms (an
# assumption: the ~4.5 ms the H100 batch-1 TTFT rows carry, with room either side).
# The attention unit overhead (a wave of decode-attention CTAs: a few dependent HBM round trips
# of ~0.5-1 us each) is searched over 0-5 us and started at 1 us (one grid value: the
# large-batch, short-context decode rows that identify it are few, and a second grid value would
# double the grid).
BOUNDS = {"compute": (0.30, 1.0), "memory": (0.50, 1.0), "overhead_s": (0.0, 20e-6), "step_s": (0.0, 0.5e-3),
          "request_s": (0.0, 10e-3), "unit_s": (0.0, 5e-6)}
# A fitted runtime's attention kernel: its share of the (calibrated) memory bandwidth, from a
# kernel 50x slower than the chip's bandwidth allows up to the calibrated attention itself.
RUNTIME_ATTENTION_BOUNDS = (0.02, 1.0)
GRID = {"compute": (0.5, 0.65, 0.8, 0.95), "memory": (0.7, 0.8, 0.9, 1.0), "overhead_s": (0.0, 4e-6, 10e-6),
        "step_s": (0.0, 0.25e-3), "request_s": (0.0, 4e-3), "unit_s": (1e-6,)}
# The optimiser works in units of order one: overheads in microseconds, step and request in ms.
SCALE = np.array([1.0, 1.0, 1e-6, 1e-3, 1e-3, 1e-6])


@dataclass(frozen=True)
class Fit:
    hw: str
    before: Calibration
    after: Calibration
    points: int
    loss_before: float
    loss_after: float
    # A family fit's runtimes marked ``fitted``: name -> gpu.attention_bandwidth before / after.
    runtimes_before: dict[str, float] = field(default_factory=dict)
    runtimes_after: dict[str, float] = field(default_factory=dict)


def _bounds(hw) -> dict[str, tuple[float, float]]:
    """The search box for ``hw``: kinds without a per-request or attention unit overhead keep
    them at zero."""
    box = BOUNDS if has_request_overhead(hw) else {**BOUNDS, "request_s": (0.0, 0.0)}
    return box if has_attention_unit_overhead(hw) else {**box, "unit_s": (0.0, 0.0)}


def _clip(x: np.ndarray, box: dict[str, tuple[float, float]]) -> Calibration:
    """``x`` clipped into ``box``; a shorter ``x`` leaves the trailing constants at their defaults."""
    x = np.asarray(x, dtype=float)
    lo = np.array([b[0] for b in box.values()])[:len(x)]
    hi = np.array([b[1] for b in box.values()])[:len(x)]
    return Calibration(*(float(v) for v in np.clip(x, lo, hi)))


def loss(points: list[Point], catalogue: Catalogue, hw, cal: Calibration) -> float:
    chip = calibrated(hw, cal)
    residuals = [np.log(predict_measured(p, chip, catalogue).value / catalogue.measured(p).value) for p in points]
    return float(np.sum(np.square(residuals)))


def fit_hardware(name: str, points: list[Point], catalogue: Catalogue, max_iter: int = 120,
                 start_at: Calibration | None = None) -> Fit:
    """Fit ``name``'s constants on ``points``: the grid picks the start (or ``start_at``, a
    refit from known constants, skips the grid) and bounded Nelder-Mead refines it."""
    from scipy.optimize import minimize

    hw = resolve_hardware(name)
    before = current_calibration(hw)
    box = _bounds(hw)

    def objective(x: np.ndarray) -> float:
        return loss(points, catalogue, hw, _clip(x * SCALE, box))

    if start_at is not None:
        start = np.array([getattr(start_at, k) for k in box]) / SCALE
    else:
        axes = [tuple(v for v in values if lo <= v <= hi) or (lo,)
                for values, (lo, hi) in zip(GRID.values(), box.values())]
        grid = [np.array(g) / SCALE for g in itertools.product(*axes)]
        start = min(grid, key=objective)
    bounds = [(lo / s, hi / s) for (lo, hi), s in zip(box.values(), SCALE)]
    best = minimize(objective, start, method="Nelder-Mead", bounds=bounds,
                    options={"maxiter": max_iter, "xatol": 1e-3, "fatol": 1e-5})
    after = _clip(best.x * SCALE, box)
    return Fit(name, before, after, len(points), loss(points, catalogue, hw, before),
               loss(points, catalogue, hw, after))


def _runs(point: Point, catalogue: Catalogue) -> bool:
    """Whether the point can be simulated at all (fitting does not change what fits)."""
    try:
        predict_measured(point, resolve_hardware(point.hw), catalogue)
    except AccelsimError:
        return False
    return True


def fitted_points(points: list[Point]) -> list[Point]:
    """The points a chip's constants are fitted on: its single-chip ones when it has any.
    Multi-chip points also depend on interconnect constants this fit does not touch, so they are
    validated (both halves of the split) but fitted only for a chip measured nowhere else (the
    TPU v4 rows); its fitted constants then also absorb the interconnect's error."""
    single = [p for p in points if p.chips == 1]
    return single or points


# A family fit runs DeepSeek-sized steps (~0.6 s of CPU a point): it fits the two efficiencies
# only (and the attention share of a points-file runtime marked ``fitted`` that its calibration
# points name), from the first member's current values, with a short Nelder-Mead.  The per-kernel and
# per-step overheads stay as configured: the interactivity rows (steps of 4-3072 sequences,
# 2-12 ms and more) cannot tell a few microseconds per kernel from a lower efficiency.
FAMILY_ITER = 30


def fit_family(family: str, catalogue: Catalogue | None = None, max_iter: int = FAMILY_ITER) -> Fit:
    """One set of efficiency constants for every chip of ``family`` (``PointsFile.families``),
    fitted on the family's calibration points, each predicted on its own chip's config with
    those constants; jointly, the ``gpu.attention_bandwidth`` of each ``fitted`` runtime those
    points name (a kernel only those rows ran)."""
    from scipy.optimize import minimize

    catalogue = catalogue or Catalogue()
    members = catalogue.spec.families.get(family)
    if not members:
        raise AccelsimError(f"no chip family {family!r} in {catalogue.path}; allowed: "
                            f"{', '.join(sorted(catalogue.spec.families)) or 'none defined'}")
    chips = {name: resolve_hardware(name) for name in members}
    points = [p for p in select(catalogue, "calibration") if p.hw in chips and _runs(p, catalogue)]
    if not points:
        raise AccelsimError(f"family {family!r} has no predictable calibration points")
    before = current_calibration(chips[members[0]])
    fitted = fitted_runtimes(points, catalogue)
    start = {name: float(rt.gpu.attention_bandwidth or 1.0) for name, rt in fitted.items()}

    def with_efficiency(x: np.ndarray) -> Calibration:
        compute, memory = (float(np.clip(v, *BOUNDS[k])) for v, k in zip(x, ("compute", "memory")))
        return Calibration(compute, memory, before.overhead_s, before.step_s, before.request_s, before.unit_s)

    def shares(x: np.ndarray) -> dict[str, float]:
        return {name: float(np.clip(v, *RUNTIME_ATTENTION_BOUNDS)) for name, v in zip(fitted, x[2:])}

    def family_loss(cal: Calibration, runtime_shares: dict[str, float]) -> float:
        residuals = [np.log(_predicted(p, calibrated(chips[p.hw], cal), catalogue, fitted, runtime_shares)
                            / catalogue.measured(p).value) for p in points]
        return float(np.sum(np.square(residuals)))

    best = minimize(lambda x: family_loss(with_efficiency(x), shares(x)),
                    np.array([before.compute, before.memory, *start.values()]),
                    method="Nelder-Mead",
                    bounds=[BOUNDS["compute"], BOUNDS["memory"], *[RUNTIME_ATTENTION_BOUNDS] * len(fitted)],
                    options={"maxiter": max_iter, "xatol": 5e-3, "fatol": 1e-3})
    after = with_efficiency(best.x)
    return Fit(family, before, after, len(points), family_loss(before, start),
               family_loss(after, shares(best.x)), start, shares(best.x))


def fitted_runtimes(points: list[Point], catalogue: Catalogue) -> dict[str, Runtime]:
    """The points file's runtimes marked ``fitted`` that ``points`` name, by name."""
    named = {p.runtime for p in points if p.runtime}
    return {name: rt for name, rt in catalogue.spec.runtimes.items() if name in named and rt.fitted}


def _predicted(point: Point, hw, catalogue: Catalogue, fitted: dict[str, Runtime],
               runtime_shares: dict[str, float]) -> float:
    """``point``'s prediction on ``hw``, a fitted runtime taking the trial attention share."""
    if point.runtime not in fitted:
        return predict_measured(point, hw, catalogue).value
    runtime = fitted[point.runtime]
    trial = runtime.model_copy(update={"gpu": runtime.gpu.model_copy(
        update={"attention_bandwidth": runtime_shares[point.runtime]})})
    return predict(point, under_runtime(hw, trial)).value


def calibrate(hws: list[str] | None = None, catalogue: Catalogue | None = None) -> list[Fit]:
    """Fit every hardware config that has predictable calibration points (or those named)."""
    catalogue = catalogue or Catalogue()
    by_hw: dict[str, list[Point]] = {}
    in_family = {name for members in catalogue.spec.families.values() for name in members}
    for p in select(catalogue, "calibration"):
        # A family's chips are fitted together (``fit_family``), never one by one.
        if p.hw not in in_family and _runs(p, catalogue):
            by_hw.setdefault(p.hw, []).append(p)
    names = sorted(by_hw) if hws is None else hws
    for name in names:  # a name with nothing to fit is refused, not skipped in silence
        if not by_hw.get(name):
            family = next((f for f, members in catalogue.spec.families.items() if name in members), None)
            how = (f"it is fitted with its family: --family {family}" if family is not None else
                   f"allowed: {', '.join(sorted(by_hw)) or 'none'}")
            raise AccelsimError(f"--hw {name}: no calibration points to fit in {catalogue.path}; {how}")
    return [fit_hardware(name, fitted_points(by_hw[name]), catalogue) for name in names]
