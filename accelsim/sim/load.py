"""Loads a serving benchmark offers, the curve over them, and the SLO capacity search.

A load is one of: open-loop arrivals at a rate (Poisson / gamma, or a trace stretched to the
rate), a closed loop of N requests in flight, or everything queued at t=0 (offline).  The same
requests (same seed) are replayed at every point of a curve, so points differ only in the load.

``find_capacity`` looks for the highest rate (or concurrency) whose TTFT and TPOT at a
percentile meet their SLOs, to a resolution of 5 %: the value it returns meets the SLO and
5 % more does not (MLPerf Server / Interactive runs the same search on hardware).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Callable, Literal

import numpy as np

from accelsim.errors import AccelsimError
from accelsim.sim.serving import (
    CostModel,
    Request,
    ServeConfig,
    ServeResult,
    queued_requests,
    scaled,
    serve,
    synthetic_requests,
)

LoadKind = Literal["rate", "concurrency", "offline"]
# The capacity search's resolution: the answer meets the SLO, the answer x STEP does not.
STEP = 1.05
MAX_PROBES = 60
MAX_RATE = 1e9  # requests/s: a burst, for any chip
DEFAULT_CURVE_FACTORS = (0.25, 0.5, 1.0, 1.5, 2.0)


@dataclass(frozen=True)
class Load:
    """What the benchmark client does: ``kind`` with its ``value`` (requests/s or requests in
    flight; ignored offline), and the requests it sends (synthetic, or a ``trace``)."""

    kind: LoadKind = "rate"
    value: float = 8.0
    requests: int = 2000
    prompt: int = 1024
    output: int = 256
    spread: float = 1.0
    arrival: str = "poisson"
    cv: float = 2.0
    seed: int = 0
    trace: tuple[Request, ...] | None = None
    shared_prefix: int = 0  # tokens every synthetic prompt starts with (one shared prefix)

    def __post_init__(self) -> None:
        if self.shared_prefix and self.trace is not None:
            raise AccelsimError("--shared-prefix is for synthetic requests; a trace gives its prefixes "
                                "in the prefix_id and prefix_len columns")
        if self.kind == "rate" and not self.value > 0:
            raise AccelsimError(f"--rate must be > 0 requests/s, got {self.value}")
        if self.kind == "concurrency" and (self.value < 1 or self.value != int(self.value)):
            raise AccelsimError(f"--concurrency must be a whole number >= 1, got {self.value}")

    def at(self, value: float) -> Load:
        return replace(self, value=value)


DEFAULT_RATE = 8.0  # requests/s, when neither a rate nor a trace says otherwise


def offered_value(rate: float | None, concurrency: int | None, trace: tuple[Request, ...] | None) -> float:
    """A load's value: the concurrency, else the rate asked, else a trace's own mean arrival rate
    (a trace replayed as recorded), else ``DEFAULT_RATE``."""
    if concurrency is not None:
        return float(concurrency)
    if rate is not None:
        return float(rate)
    if trace is not None and len(trace) > 1:
        return (len(trace) - 1) / max(trace[-1].arrival_s - trace[0].arrival_s, 1e-12)
    return DEFAULT_RATE


def requests_for(load: Load) -> list[Request]:
    """The requests ``load`` sends (arrival times matter only for a rate)."""
    if load.trace is not None:
        base = list(load.trace)
        if load.kind == "rate":
            return scaled(base, load.value)
        return [replace(r, arrival_s=0.0) for r in base]
    if load.kind == "rate":
        return synthetic_requests(load.requests, load.value, arrival=load.arrival, cv=load.cv,
                                  prompt=load.prompt, output=load.output, seed=load.seed, spread=load.spread,
                                  shared_prefix=load.shared_prefix)
    return queued_requests(load.requests, prompt=load.prompt, output=load.output, seed=load.seed,
                           spread=load.spread, shared_prefix=load.shared_prefix)


def run(costs: CostModel, config: ServeConfig, load: Load) -> ServeResult:
    """One serving run under ``load``."""
    requests = requests_for(load)
    if load.kind == "concurrency":
        return serve(requests, costs, config, float("nan"), concurrency=int(load.value))
    rate = load.value if load.kind == "rate" else float("nan")
    return serve(requests, costs, config, rate)


def default_points(load: Load) -> list[float]:
    """Curve points without a list: fractions and multiples of the rate, or powers of two up to
    twice the concurrency (the sweep InferenceX draws its frontier from); offline is one point."""
    if load.kind == "rate":
        return [load.value * f for f in DEFAULT_CURVE_FACTORS]
    if load.kind == "concurrency":
        top = 2 * int(load.value)
        return [float(2 ** k) for k in range(int(math.log2(top)) + 1)] + ([float(top)] if top & (top - 1) else [])
    return [load.value]


def curve(costs: CostModel, config: ServeConfig, load: Load, points: list[float]) -> list[ServeResult]:
    return [run(costs, config, load.at(p)) for p in sorted(set(points))]


# --- SLO capacity ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Slo:
    ttft_s: float
    tpot_s: float
    percentile: float = 99.0

    def __post_init__(self) -> None:
        if not 0 < self.percentile <= 100:
            raise AccelsimError(f"--slo-percentile must be within (0, 100], got {self.percentile}")
        if not (self.ttft_s > 0 and self.tpot_s > 0):
            raise AccelsimError("--slo-ttft and --slo-tpot must be > 0 seconds")

    def measured(self, result: ServeResult) -> tuple[float, float]:
        """(TTFT, TPOT) at the percentile."""
        ttft = [r.ttft_s for r in result.requests]
        tpot = [r.tpot_s for r in result.requests]
        return float(np.percentile(ttft, self.percentile)), float(np.percentile(tpot, self.percentile))

    def met(self, result: ServeResult) -> bool:
        ttft, tpot = self.measured(result)
        return ttft <= self.ttft_s and tpot <= self.tpot_s


@dataclass(frozen=True)
class Capacity:
    """The highest load meeting ``slo`` (``best``), and the run 5 % above it (``above``)."""

    kind: LoadKind
    value: float
    best: ServeResult
    above_value: float
    above: ServeResult
    slo: Slo
    probes: int

    def summary(self) -> dict:
        ttft, tpot = self.slo.measured(self.best)
        a_ttft, a_tpot = self.slo.measured(self.above)
        q = f"p{self.slo.percentile:g}"
        return {"load": self.kind, "value": self.value, "percentile": q,
                "slo": {"ttft_s": self.slo.ttft_s, "tpot_s": self.slo.tpot_s},
                "at_capacity": {"ttft_s": ttft, "tpot_s": tpot,
                                "throughput_tokens_per_s": self.best.throughput_tokens_per_s,
                                "throughput_tokens_per_s_per_chip": self.best.throughput_tokens_per_s_per_chip,
                                "tokens_per_s_per_user": self.best.tokens_per_s_per_user},
                "above": {"value": self.above_value, "ttft_s": a_ttft, "tpot_s": a_tpot},
                "probes": self.probes}


def _next_up(kind: LoadKind, value: float) -> float:
    return float(math.ceil(value * STEP)) if kind == "concurrency" else value * STEP


def find_capacity(costs: CostModel, config: ServeConfig, load: Load, slo: Slo) -> Capacity:
    """Highest rate (or concurrency) meeting ``slo``: bracket by doubling / halving from
    ``load.value``, bisect (geometrically for a rate, by integers for a concurrency) until the
    bracket is within 5 %, then confirm that 5 % above the answer fails; if it passes (load is
    not perfectly monotone in a finite sample) the search continues upward from there."""
    if load.kind == "offline":
        raise AccelsimError("--find-capacity searches a --rate or a --concurrency, not --offline")
    kind = load.kind
    seen: dict[float, ServeResult] = {}

    def probe(value: float) -> ServeResult:
        if len(seen) >= MAX_PROBES and value not in seen:
            raise AccelsimError(f"--find-capacity did not settle within {MAX_PROBES} runs")
        if value not in seen:
            seen[value] = run(costs, config, load.at(value))
        return seen[value]

    floor = 1.0 if kind == "concurrency" else 1e-6
    # Past every request in flight at once (or arriving at once) more load changes nothing.
    ceiling = float(len(requests_for(load))) if kind == "concurrency" else MAX_RATE
    start = min(max(float(load.value), floor), ceiling)
    lo, hi = _bracket(probe, slo.met, kind, start, floor, ceiling)
    while True:
        lo, hi = _bisect(probe, slo.met, kind, lo, hi)
        up = _next_up(kind, lo)
        if not slo.met(probe(up)):
            return Capacity(kind, lo, seen[lo], up, seen[up], slo, len(seen))
        lo, hi = _bracket(probe, slo.met, kind, up, floor, ceiling)


def _bracket(probe: Callable[[float], ServeResult], met: Callable[[ServeResult], bool], kind: LoadKind,
             start: float, floor: float, ceiling: float) -> tuple[float, float]:
    """(meets, fails) around ``start``."""
    if met(probe(start)):
        lo = start
        hi = min(_grow(lo, kind), ceiling)
        while met(probe(hi)):
            if hi >= ceiling:
                raise AccelsimError(
                    f"the SLO is met even with all {int(ceiling)} requests in flight at once; raise "
                    f"--requests to find the limit" if kind == "concurrency" else
                    "the SLO is met at every rate up to all requests arriving at once; raise --requests "
                    "or tighten the SLO")
            lo, hi = hi, min(_grow(hi, kind), ceiling)
        return lo, hi
    hi = start
    lo = _shrink(hi, kind)
    while not met(probe(lo)):
        if lo <= floor:
            raise AccelsimError(
                "no load meets the SLO: even one request at a time misses it (raise --slo-ttft / "
                "--slo-tpot, or use a faster chip)" if kind == "concurrency" else
                "no rate meets the SLO: a request served alone misses it (raise --slo-ttft / --slo-tpot)")
        hi, lo = lo, max(_shrink(lo, kind), floor)
    return lo, hi


def _grow(value: float, kind: LoadKind) -> float:
    return value * 2


def _shrink(value: float, kind: LoadKind) -> float:
    return max(1.0, float(math.floor(value / 2))) if kind == "concurrency" else value / 2


def _bisect(probe: Callable[[float], ServeResult], met: Callable[[ServeResult], bool], kind: LoadKind,
            lo: float, hi: float) -> tuple[float, float]:
    while (hi - lo > 1) if kind == "concurrency" else (hi > lo * 1.01):
        mid = float((lo + hi) // 2) if kind == "concurrency" else math.sqrt(lo * hi)
        if met(probe(mid)):
            lo = mid
        else:
            hi = mid
    return lo, hi
