"""Serving simulation: requests arrive, a scheduler batches them, the cost model times each step.

Discrete-time at step granularity: the chip runs one batch step at a time (a prefill of some
prompt tokens and/or one decode token for every running request); each step's time and energy
come from ``accelsim.api.simulate`` for that batch shape.  Schedulers:

``static``      a batch of up to ``max_batch`` waiting requests is prefilled together and decoded
                until its longest request finishes; nothing joins a batch in flight.
``continuous``  (vLLM-style) requests join and leave at every step; prompts are prefilled in
                chunks of at most ``chunk`` tokens per step alongside the running decodes.
``pipelined``   hardwired chips: users occupy groups of the layer pipeline; new users join at
                round boundaries and their whole prompt streams through the pipeline at once.

Loads: open loop (requests arrive at their ``arrival_s``: Poisson, gamma or a trace), closed
loop (``concurrency`` N: N requests are sent at t=0 and each completion sends the next, as
GenAI-Perf / vLLM's benchmark_serving / InferenceX measure; TTFT counts from each send), and
offline (every request queued at t=0, as TensorRT-LLM's max-throughput benchmark and MLPerf
Offline run).

KV cache is paged (blocks of ``block_size`` tokens).  ``reserve_output`` says how much of a
request's output the scheduler must find room for before admitting it: 1 reserves prompt +
output up front (TensorRT-LLM's GUARANTEED_NO_EVICT: a started request never pauses), 0 only
prompt + 1 (vLLM: blocks are taken as tokens come), a fraction in between keeps that share of
the running requests' remaining outputs free (SGLang's new-token ratio).  When a decoding request
needs a block and none is free, the most recently admitted request is preempted: its blocks are
freed and its prompt and output so far recomputed later (``recompute``), or its cache is copied
to host memory and back (``swap``, charged at ``swap_bandwidth`` each way).

Step-time memoisation (documented conservatism): shapes are rounded *up* to a geometric bucket
grid before they are costed (batch, prefill tokens, mean context: ratio ``2**(1/4)``, exact
below 8), so a bucketed step is never cheaper than the exact one.  A decode batch is costed at
its mean context (attention work is linear in context, so the mean gives the same total).  A
mixed step (prefill chunk + decodes) is costed as the sum of a prefill of the chunk and a decode
of the batch: this charges the weight pass twice (conservative), and does not charge the
chunk's attention to earlier chunks of its own prompt (an understatement that is small while
chunks are short against the matmul work).
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np

from accelsim import hardware, pipeline
from accelsim.errors import AccelsimError, DoesNotFitError
from accelsim.hardware.spec import HardwareBase
from accelsim.model.density import DensityProfile
from accelsim.model.spec import ModelSpec
from accelsim.sim.result import Result
from accelsim.transform import Parallelism
from accelsim.workload import Workload

Scheduler = Literal["static", "continuous", "pipelined"]
SCHEDULERS: tuple[str, ...] = ("static", "continuous", "pipelined")
Preemption = Literal["recompute", "swap"]
PREEMPTIONS: tuple[str, ...] = ("recompute", "swap")
MemoryBasis = Literal["free", "total"]
MEMORY_BASES: tuple[str, ...] = ("free", "total")
ARRIVALS: tuple[str, ...] = ("poisson", "gamma")
# source: PCIe Gen5 x16, 64 GB/s per direction: the host interface of H100 SXM and H200
# (NVIDIA H100 / H200 datasheets); what a swapped KV cache crosses each way.
DEFAULT_SWAP_BANDWIDTH = 64e9
BUCKET_RATIO = 2 ** 0.25
EXACT_BELOW = 8
# source: vLLM's default KV block size (16 tokens) and gpu_memory_utilization (0.9),
# https://docs.vllm.ai/en/latest/serving/engine_args.html
DEFAULT_BLOCK_SIZE = 16
DEFAULT_MEMORY_UTILISATION = 0.9
TRACE_COLUMNS = ("arrival_s", "prompt_tokens", "output_tokens")


@dataclass(frozen=True)
class Request:
    rid: int
    arrival_s: float
    prompt: int
    output: int


@dataclass(frozen=True)
class ServeConfig:
    scheduler: Scheduler = "continuous"
    max_batch: int = 256
    chunk: int = 512
    block_size: int = DEFAULT_BLOCK_SIZE
    kv_blocks: int | None = None  # override the capacity derived from the chip
    memory_utilisation: float = DEFAULT_MEMORY_UTILISATION
    # What ``memory_utilisation`` is a share of: the memory left beside the weights (``free``:
    # TensorRT-LLM's free_gpu_memory_fraction) or all of it, weights included (``total``: vLLM's
    # gpu_memory_utilization, SGLang's mem_fraction_static).
    memory_basis: MemoryBasis = "free"
    reserve_output: float = 0.0
    preemption: Preemption = "recompute"
    swap_bandwidth: float = DEFAULT_SWAP_BANDWIDTH
    slo_ttft_s: float = 0.5
    slo_tpot_s: float = 0.05

    def __post_init__(self) -> None:
        if self.scheduler not in SCHEDULERS:
            raise AccelsimError(f"--scheduler must be one of {', '.join(SCHEDULERS)}, got {self.scheduler!r}")
        if self.preemption not in PREEMPTIONS:
            raise AccelsimError(f"--preemption must be one of {', '.join(PREEMPTIONS)}, got {self.preemption!r}")
        if self.memory_basis not in MEMORY_BASES:
            raise AccelsimError(f"memory basis must be one of {', '.join(MEMORY_BASES)}, got {self.memory_basis!r}")
        if not 0.0 <= self.reserve_output <= 1.0:
            raise AccelsimError(f"--kv-reserve must be within 0..1 (share of the output reserved), "
                                f"got {self.reserve_output}")
        if not 0.0 < self.memory_utilisation <= 1.0:
            raise AccelsimError(f"--kv-memory-fraction must be within (0, 1], got {self.memory_utilisation}")
        if not self.swap_bandwidth > 0:
            raise AccelsimError(f"swap bandwidth must be > 0 B/s, got {self.swap_bandwidth}")
        for name in ("max_batch", "chunk", "block_size"):
            if getattr(self, name) < 1:
                raise AccelsimError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.kv_blocks is not None and self.kv_blocks < 1:
            raise AccelsimError(f"kv_blocks must be >= 1, got {self.kv_blocks}")
        if self.slo_ttft_s <= 0 or self.slo_tpot_s <= 0:
            raise AccelsimError("--slo-ttft and --slo-tpot must be > 0 seconds")


# --- arrivals -------------------------------------------------------------------------------

# Sane maxima for a serving run, stated in the errors: every request is simulated one by one, so
# the count bounds time and memory (a million takes minutes); token counts and times beyond these
# are typos, and keeping them finite keeps every reported figure finite.
MAX_REQUESTS = 1_000_000
MAX_TOKENS = 2**24
MAX_ARRIVAL_S = 1e9


def _check_lengths(prompt: int, output: int, spread: float) -> None:
    if not (1 <= prompt <= MAX_TOKENS and 1 <= output <= MAX_TOKENS):
        raise AccelsimError(f"--prompt and --output must be in [1, {MAX_TOKENS}] tokens, got {prompt} "
                            f"and {output}")
    if not 0.0 < spread <= 1.0:
        raise AccelsimError(f"--length-spread must be within (0, 1] (the shortest length as a share "
                            f"of the nominal one; 1 = fixed lengths), got {spread}")


def spread_lengths(n: int, nominal: int, spread: float, rng: np.random.Generator) -> np.ndarray:
    """``n`` lengths uniform over the integers ``ceil(spread * nominal) .. nominal`` (all
    ``nominal`` when ``spread`` is 1): vLLM's benchmark_serving random dataset with
    ``--random-range-ratio``, as InferenceX runs it (ratio 0.8: 80-100 % of the nominal length)."""
    if spread >= 1.0:
        return np.full(n, nominal, dtype=int)
    low = max(1, math.ceil(spread * nominal))
    return rng.integers(low, nominal + 1, n)


def _with_lengths(times: np.ndarray, prompt: int, output: int, spread: float, seed: int) -> list[Request]:
    # Lengths draw from their own stream, so a spread leaves the arrival times of a seed unchanged.
    rng = np.random.default_rng([seed, 1])
    prompts = spread_lengths(len(times), prompt, spread, rng)
    outputs = spread_lengths(len(times), output, spread, rng)
    return [Request(i, float(t), int(p), int(o)) for i, (t, p, o) in enumerate(zip(times, prompts, outputs))]


def synthetic_requests(n: int, rate: float, *, arrival: str = "poisson", cv: float = 2.0,
                       prompt: int = 1024, output: int = 256, seed: int = 0,
                       spread: float = 1.0) -> list[Request]:
    """``n`` requests at mean ``rate``/s: Poisson (exponential gaps) or bursty gamma gaps with
    coefficient of variation ``cv`` (shape 1/cv^2, same mean).  Lengths are the nominal ones,
    or spread uniformly down to ``spread`` x nominal (``spread_lengths``)."""
    if not 1 <= n <= MAX_REQUESTS:
        raise AccelsimError(f"--requests must be in [1, {MAX_REQUESTS}], got {n}")
    if not rate > 0:
        raise AccelsimError(f"--rate must be > 0 requests/s, got {rate}")
    if arrival not in ARRIVALS:
        raise AccelsimError(f"--arrival must be one of {', '.join(ARRIVALS)}, got {arrival!r}")
    _check_lengths(prompt, output, spread)
    rng = np.random.default_rng(seed)
    if arrival == "poisson":
        gaps = rng.exponential(1.0 / rate, n)
    else:
        if not cv > 0:
            raise AccelsimError(f"--cv must be > 0, got {cv}")
        shape = 1.0 / cv**2
        gaps = rng.gamma(shape, 1.0 / (rate * shape), n)
    return _with_lengths(np.cumsum(gaps), prompt, output, spread, seed)


def queued_requests(n: int, *, prompt: int = 1024, output: int = 256, seed: int = 0,
                    spread: float = 1.0) -> list[Request]:
    """``n`` requests all queued at t=0, in order: the offline load, and the order in which a
    closed loop sends them (``serve(..., concurrency=N)`` rewrites their send times)."""
    if n < 1:
        raise AccelsimError(f"--requests must be >= 1, got {n}")
    _check_lengths(prompt, output, spread)
    return _with_lengths(np.zeros(n), prompt, output, spread, seed)


def parse_trace(rows: list[dict[str, str]], path: str) -> list[Request]:
    """Requests from the rows of a trace CSV with columns arrival_s, prompt_tokens, output_tokens
    (one request a row; ``accelsim.api.load_trace`` reads the file); errors name ``path``."""
    if not rows or any(c not in rows[0] for c in TRACE_COLUMNS):
        raise AccelsimError(f"trace needs columns {', '.join(TRACE_COLUMNS)}", source=path)
    requests: list[tuple[float, int, int]] = []
    for line, row in enumerate(rows, start=2):
        try:
            arrival, prompt, output = float(row["arrival_s"]), int(row["prompt_tokens"]), int(row["output_tokens"])
        except (TypeError, ValueError):
            raise AccelsimError("arrival_s must be a number and prompt_tokens/output_tokens integers",
                                source=f"{path}:{line}") from None
        if not (0 <= arrival <= MAX_ARRIVAL_S and 1 <= prompt <= MAX_TOKENS and 1 <= output <= MAX_TOKENS):
            raise AccelsimError(f"arrival_s must be a number in [0, {MAX_ARRIVAL_S:g}] s and prompt_tokens/"
                                f"output_tokens integers in [1, {MAX_TOKENS}]", source=f"{path}:{line}")
        if len(requests) == MAX_REQUESTS:
            raise AccelsimError(f"a trace may hold at most {MAX_REQUESTS} requests", source=f"{path}:{line}")
        requests.append((arrival, prompt, output))
    requests.sort(key=lambda r: r[0])
    return [Request(i, a, p, o) for i, (a, p, o) in enumerate(requests)]


def scaled(requests: list[Request], rate: float) -> list[Request]:
    """The same requests with arrival times stretched to a new mean rate."""
    if len(requests) < 2:
        return requests
    span = requests[-1].arrival_s - requests[0].arrival_s
    if span <= 0:
        return requests
    factor = (len(requests) - 1) / rate / span
    return [replace(r, arrival_s=r.arrival_s * factor) for r in requests]


# --- step costs -----------------------------------------------------------------------------

def bucket(value: int) -> int:
    """Round up to the geometric grid (exact below ``EXACT_BELOW``): never below ``value``."""
    if value <= EXACT_BELOW:
        return value
    steps = math.ceil(math.log(value / EXACT_BELOW, BUCKET_RATIO) - 1e-9)
    return max(value, math.ceil(EXACT_BELOW * BUCKET_RATIO ** steps))


@dataclass(frozen=True)
class StepCost:
    time_s: float
    energy_j: float


class CostModel:
    """Memoised step costs for one model on one chip (shared across request rates)."""

    def __init__(self, model: ModelSpec, hw: HardwareBase, parallelism: Parallelism | None = None,
                 density: DensityProfile | None = None, **dtypes: str | None):
        self.density = density  # every step's Workload carries it
        self.model = model
        self.hw = hw
        self.backend = hardware.backend(self.hw)
        # The options every step is costed with (``pipeline.model_step``'s keywords).
        self.dtypes: dict[str, Any] = {**dtypes, **({"parallelism": parallelism} if parallelism else {})}
        self.memo: dict[tuple, StepCost] = {}
        self.calls = 0
        probe = self._simulate(Workload("decode", 1, 1, 0))
        # Footprints from ``simulate`` are system totals, so capacity is counted over all chips:
        # those asked for, or those a kind that sizes its own system chose for the model.
        self.chips = probe.chips
        if parallelism is None and self.backend.spans_chips(self.hw):
            # Serve on that one system: every step runs on the chips the capacity counts.
            self.dtypes["parallelism"] = Parallelism(pp=self.chips)
        self.weight_bytes = probe.footprint_bytes.get("weight", 0.0)
        self.state_bytes_per_seq = probe.footprint_bytes.get("state", 0.0)
        # One cached token; 0 for purely recurrent models, whose memory per user is their state.
        self.kv_bytes_per_token = probe.footprint_bytes.get("kv_cache", 0.0)
        self.static_w = self.hw.power.static * self.chips  # drawn while idle between requests
        # The runtime's per-request work (``Backend.request_overhead``): it delays a request's
        # first token, and so everything after it, but occupies no chip step.
        self.request_overhead_s = float(self.backend.request_overhead(self.hw))

    def _simulate(self, workload: Workload) -> Result:
        self.calls += 1
        return pipeline.model_step(self.model, self.hw, replace(workload, density=self.density),
                                   **self.dtypes).result

    def _cost(self, key: tuple, exact: Workload, bucketed: Workload) -> StepCost:
        if key not in self.memo:
            try:
                result = self._simulate(bucketed)
            except DoesNotFitError:
                # The bucket overshoots capacity; the exact shape was admitted, so it fits.
                result = self._simulate(exact)
            self.memo[key] = StepCost(result.latency_s, result.energy_total_j)
        return self.memo[key]

    @property
    def _dp(self) -> int:
        layout = self.dtypes.get("parallelism")
        return layout.dp if isinstance(layout, Parallelism) else 1

    def _ranks(self, sequences: int) -> int:
        """Decode sequences as attention data parallelism runs them (``--dp-attn``): a batch of
        at least ``dp`` is padded to a multiple of it, since every rank steps with the busiest."""
        dp = self._dp
        return sequences if sequences <= dp else -(-sequences // dp) * dp

    def prefill(self, tokens: int, sequences: int = 1) -> StepCost:
        # Attention data parallelism balances a step's prompt tokens over its ranks, so more
        # sequences than ranks are costed as one sequence of tokens/dp per rank (its attention
        # as one prompt of that length: never less than the shorter prompts it stands for).
        dp = self._dp
        sequences = min(sequences, dp) if dp > 1 else sequences
        per_seq = math.ceil(tokens / sequences)
        # Up to one sequence per rank: a bucket past dp would not split evenly over the ranks.
        b_seq, b_len = (min(bucket(sequences), dp) if dp > 1 else bucket(sequences)), bucket(per_seq)
        return self._cost(("prefill", b_seq, b_len), Workload("prefill", sequences, per_seq, 0),
                          Workload("prefill", b_seq, b_len, 0))

    def decode(self, batch: int, mean_context: float) -> StepCost:
        context = math.ceil(mean_context)
        batch = self._ranks(batch)
        b_batch, b_ctx = self._ranks(bucket(batch)), bucket(max(context, 1))
        return self._cost(("decode", b_batch, b_ctx), Workload("decode", batch, 1, context),
                          Workload("decode", b_batch, 1, b_ctx))

    def block_bytes(self, block_size: int) -> float:
        """Bytes of one cache block: ``block_size`` tokens of KV, or, for a model with no KV
        cache, one sequence's recurrent state."""
        if self.kv_bytes_per_token > 0:
            return block_size * self.kv_bytes_per_token
        return max(self.state_bytes_per_seq, 1.0)

    def state_blocks(self, block_size: int) -> int:
        """Blocks a sequence pins for its recurrent state (hybrids), whatever its length."""
        return math.ceil(self.state_bytes_per_seq / self.block_bytes(block_size))

    def cache_capacity_bytes(self, utilisation: float, basis: MemoryBasis = "free") -> float:
        """Bytes of KV cache and state the chips hold beside their weights: a share of what the
        kind says is free (``Backend.kv_capacity``), or, with ``basis="total"``, a share of all
        of it less the weights (how vLLM and SGLang size their pools)."""
        free = self.backend.kv_capacity(self.hw, self.weight_bytes, self.chips)
        if free <= 0:
            raise DoesNotFitError(f"{self.model.name} weights do not fit on {self.hw.name}")
        if basis == "total":
            pool = self.backend.kv_capacity(self.hw, 0.0, self.chips) * utilisation - self.weight_bytes
            if pool <= 0:
                raise DoesNotFitError(f"{self.model.name} weights take more than {utilisation:g} of "
                                      f"{self.hw.name}'s memory (the runtime's KV memory fraction)")
            return pool
        return free * utilisation

    def swap_time_s(self, tokens: int, bandwidth: float) -> float:
        """Seconds to copy one sequence's cache (``tokens`` of KV and its state) one way."""
        return (tokens * self.kv_bytes_per_token + self.state_bytes_per_seq) / bandwidth


# --- the scheduler loop ---------------------------------------------------------------------

@dataclass
class _Live:
    """A request in the system: how far its prompt and output have got, and its KV blocks."""

    req: Request
    prefilled: int = 0
    generated: int = 0
    blocks: int = 0
    first_token_s: float | None = None
    finish_s: float | None = None
    preemptions: int = 0
    refill: int = 0  # tokens to recompute after a recompute preemption (prompt + output so far)
    swapped: bool = False  # its cache waits in host memory

    @property
    def to_prefill(self) -> int:
        return self.refill or self.req.prompt

    @property
    def context(self) -> int:
        return self.req.prompt + self.generated


@dataclass(frozen=True)
class Step:
    start_s: float
    end_s: float
    prefill_tokens: int
    decodes: int
    running: int
    waiting: int
    kv_blocks_used: int
    energy_j: float

    @property
    def label(self) -> str:
        parts = ([f"prefill {self.prefill_tokens} tok"] if self.prefill_tokens else []) + \
                ([f"decode x{self.decodes}"] if self.decodes else [])
        return " + ".join(parts)


@dataclass(frozen=True)
class RequestStats:
    rid: int
    arrival_s: float
    prompt: int
    output: int
    ttft_s: float
    tpot_s: float
    e2e_s: float
    preemptions: int


@dataclass(frozen=True)
class ServeResult:
    rate: float
    scheduler: str
    requests: list[RequestStats]
    steps: list[Step]
    kv_blocks: int
    block_size: int
    idle_energy_j: float
    config: ServeConfig
    notes: tuple[str, ...] = field(default_factory=tuple)
    concurrency: int | None = None  # closed loop: requests kept in flight
    offline: bool = False
    chips: int = 1

    @property
    def load(self) -> dict[str, Any]:
        if self.concurrency is not None:
            return {"kind": "concurrency", "value": self.concurrency}
        if self.offline:
            return {"kind": "offline", "value": len(self.requests)}
        return {"kind": "rate", "value": self.rate}

    @property
    def makespan_s(self) -> float:
        start = min(r.arrival_s for r in self.requests)
        return max(r.arrival_s + r.e2e_s for r in self.requests) - start

    @property
    def output_tokens(self) -> int:
        return sum(r.output for r in self.requests)

    @property
    def throughput_tokens_per_s(self) -> float:
        return self.output_tokens / self.makespan_s

    @property
    def throughput_tokens_per_s_per_chip(self) -> float:
        return self.throughput_tokens_per_s / self.chips

    @property
    def tokens_per_s_per_user(self) -> float:
        """Median over requests of 1 / TPOT (InferenceX's "interactivity"); requests of one
        output token have no TPOT and are left out."""
        rates = [1.0 / r.tpot_s for r in self.requests if r.tpot_s > 0]
        return float(np.median(rates)) if rates else 0.0

    @property
    def throughput_requests_per_s(self) -> float:
        return len(self.requests) / self.makespan_s

    @property
    def goodput_requests_per_s(self) -> float:
        """Requests per second that met both SLOs (TTFT and TPOT)."""
        ok = sum(1 for r in self.requests
                 if r.ttft_s <= self.config.slo_ttft_s and r.tpot_s <= self.config.slo_tpot_s)
        return ok / self.makespan_s

    @property
    def energy_j(self) -> float:
        return sum(s.energy_j for s in self.steps) + self.idle_energy_j

    @property
    def max_running(self) -> int:
        return max((s.running for s in self.steps), default=0)

    @property
    def preemptions(self) -> int:
        return sum(r.preemptions for r in self.requests)

    def percentiles(self, metric: str) -> dict[str, float]:
        values = np.array([getattr(r, metric) for r in self.requests])
        return {f"p{q}": float(np.percentile(values, q)) for q in (50, 90, 99)} | {"mean": float(values.mean())}

    def summary(self) -> dict:
        return {
            # A closed-loop or offline run has no offered rate: null, never NaN, in JSON.
            "rate": self.rate if math.isfinite(self.rate) else None, "load": self.load, "scheduler": self.scheduler, "requests": len(self.requests),
            "ttft_s": self.percentiles("ttft_s"), "tpot_s": self.percentiles("tpot_s"),
            "e2e_s": self.percentiles("e2e_s"),
            "throughput_tokens_per_s": self.throughput_tokens_per_s,
            "throughput_tokens_per_s_per_chip": self.throughput_tokens_per_s_per_chip,
            "tokens_per_s_per_user": self.tokens_per_s_per_user, "chips": self.chips,
            "throughput_requests_per_s": self.throughput_requests_per_s,
            "goodput_requests_per_s": self.goodput_requests_per_s,
            "slo": {"ttft_s": self.config.slo_ttft_s, "tpot_s": self.config.slo_tpot_s},
            "joules_per_token": self.energy_j / self.output_tokens,
            "makespan_s": self.makespan_s, "steps": len(self.steps),
            "max_running": self.max_running, "preemptions": self.preemptions,
            "kv_blocks": self.kv_blocks, "block_size": self.block_size, "notes": list(self.notes),
        }


def serve(requests: list[Request], costs: CostModel, config: ServeConfig = ServeConfig(),
          rate: float = float("nan"), concurrency: int | None = None) -> ServeResult:
    """Run every request to completion under ``config``'s scheduler; deterministic.

    With ``concurrency`` N the load is a closed loop: the arrival times of ``requests`` are
    ignored, the first N are sent at t=0 and each completion (as the client sees it, after the
    per-request overhead) sends the next one in order."""
    if not requests:
        raise AccelsimError("no requests to serve")
    if concurrency is not None and concurrency < 1:
        raise AccelsimError(f"--concurrency must be >= 1 requests in flight, got {concurrency}")
    if config.scheduler == "pipelined" and not costs.backend.pipelined(costs.hw):
        raise AccelsimError(f"--scheduler pipelined is for chips that run their layers as a pipeline "
                            f"of users (hardwired); {costs.hw.name} does not (use continuous or static)")
    capacity = kv_capacity_blocks(costs, config)
    loop = _Loop(requests, costs, config, capacity, concurrency)
    loop.run()
    stats = [_stats(live, costs.request_overhead_s) for live in loop.finished]
    if costs.request_overhead_s > 0:
        loop.notes.append(f"request overhead {costs.request_overhead_s * 1e3:.2f} ms per request "
                          f"(gpu.request_overhead) added to TTFT and end-to-end latency, not to steps")
    stats.sort(key=lambda s: s.rid)
    offline = concurrency is None and all(r.arrival_s == 0 for r in requests) and len(requests) > 1
    return ServeResult(rate, config.scheduler, stats, loop.steps, capacity, config.block_size,
                       loop.idle_s * costs.static_w, config, tuple(loop.notes), concurrency, offline,
                       costs.chips)


def kv_capacity_blocks(costs: CostModel, config: ServeConfig) -> int:
    """KV blocks one replica of ``costs``' chips holds under ``config`` (``kv_blocks`` overrides)."""
    if config.kv_blocks is not None:
        return config.kv_blocks
    return int(costs.cache_capacity_bytes(config.memory_utilisation, config.memory_basis)
               // costs.block_bytes(config.block_size))


def _stats(live: _Live, request_overhead_s: float = 0.0) -> RequestStats:
    """Per-request figures; the per-request overhead is paid once with the first token, so it
    moves TTFT and end-to-end latency by the same amount and leaves TPOT alone."""
    req, first, finish = live.req, live.first_token_s, live.finish_s
    if first is None or finish is None:  # the loop only finishes requests that have both
        raise AccelsimError(f"request {req.rid} finished without a first token")
    ttft = first - req.arrival_s + request_overhead_s
    tpot = (finish - first) / (req.output - 1) if req.output > 1 else 0.0
    return RequestStats(req.rid, req.arrival_s, req.prompt, req.output, ttft, tpot,
                        finish - req.arrival_s + request_overhead_s, live.preemptions)


class _Loop:
    def __init__(self, requests: list[Request], costs: CostModel, config: ServeConfig, blocks: int,
                 concurrency: int | None = None):
        if concurrency is None:
            self.pending = deque(sorted(requests, key=lambda r: (r.arrival_s, r.rid)))
            self.unsent: deque[Request] = deque()
        else:
            # Closed loop: the first N go out at t=0, the rest wait for a completion each.
            ordered = sorted(requests, key=lambda r: r.rid)
            self.pending = deque(replace(r, arrival_s=0.0) for r in ordered[:concurrency])
            self.unsent = deque(ordered[concurrency:])
        self.costs, self.config = costs, config
        self.capacity = blocks
        self.free = blocks
        self.waiting: deque[_Live] = deque()
        self.running: list[_Live] = []  # in admission order
        self.finished: list[_Live] = []
        self.steps: list[Step] = []
        self.now = 0.0
        self.idle_s = 0.0
        self.swap_s = 0.0  # host copies the next step waits for
        self.notes: list[str] = []
        self.state_blocks = costs.state_blocks(config.block_size)
        self.tokens_take_blocks = costs.kv_bytes_per_token > 0
        need = max(self._blocks_for(r.prompt + r.output) for r in requests)
        if need > blocks:
            raise AccelsimError(
                f"one request needs {need} KV blocks of {config.block_size} tokens but the chip "
                f"holds {blocks}; shorten --prompt/--output or use a larger chip")

    def _blocks_for(self, tokens: int) -> int:
        kv = -(-tokens // self.config.block_size) if self.tokens_take_blocks else 0
        return kv + self.state_blocks

    def _arrive(self) -> None:
        while self.pending and self.pending[0].arrival_s <= self.now:
            self.waiting.append(_Live(self.pending.popleft()))

    def _send_next(self, done: list[_Live]) -> None:
        """Closed loop: each completion sends the next request when the client sees it end."""
        for live in sorted(done, key=lambda d: (d.finish_s or 0.0, d.req.rid)):
            if self.unsent:
                sent = (live.finish_s or 0.0) + self.costs.request_overhead_s
                self.pending.append(replace(self.unsent.popleft(), arrival_s=sent))

    def run(self) -> None:
        step = {"static": self._static_batch, "continuous": self._continuous_step,
                "pipelined": self._pipelined_step}[self.config.scheduler]
        while self.pending or self.waiting or self.running:
            self._arrive()
            if not self.waiting and not self.running:
                self.idle_s += self.pending[0].arrival_s - self.now
                self.now = self.pending[0].arrival_s
                continue
            step()

    # -- shared pieces

    def _future_blocks(self, extra: _Live | None = None) -> int:
        """Blocks kept free for the share ``reserve_output`` of the remaining outputs of the
        running requests (and of ``extra``), beyond the blocks they already hold."""
        share = self.config.reserve_output
        if share <= 0 or not self.tokens_take_blocks:
            return 0
        lives = self.running + ([extra] if extra is not None else [])
        tokens = sum(max(0, math.ceil(live.context + share * (live.req.output - live.generated))
                         - (live.blocks - self.state_blocks) * self.config.block_size)
                     for live in lives)
        return -(-tokens // self.config.block_size)

    def _admit(self, limit: int, reserve_output: bool) -> list[_Live]:
        """FIFO admission while blocks and batch slots allow.  Blocks are taken for the prompt
        (or what is recomputed, or a swapped-in cache) plus one token, or plus the whole
        remaining output when it is reserved up front; a partial reservation only admits while
        its share of every running request's remaining output still fits."""
        admitted = []
        full = reserve_output or self.config.reserve_output >= 1.0
        while self.waiting and len(self.running) < limit:
            live = self.waiting[0]
            held = live.context if live.swapped else live.to_prefill
            tokens = held + (live.req.output - live.generated if full else 1)
            need = self._blocks_for(tokens)
            if need > self.free:
                break
            if not full and self.config.reserve_output > 0 and self.running:
                live.blocks = need
                fits = need + self._future_blocks(live) <= self.free
                live.blocks = 0
                if not fits:
                    break
            self.waiting.popleft()
            live.blocks, self.free = need, self.free - need
            if live.swapped:
                self.swap_s += self.costs.swap_time_s(live.context, self.config.swap_bandwidth)
                live.swapped = False
            self.running.append(live)
            admitted.append(live)
        return admitted

    def _grow(self, decoding: list[_Live]) -> list[_Live]:
        """Give each decoding request room for its next token, preempting the newest when the
        cache is full (its blocks freed, the request back at the head of the queue)."""
        size = self.config.block_size
        # A request needs a new block only when its next token starts one.
        needs = [live for live in decoding if self.tokens_take_blocks
                 and live.context + 1 > (live.blocks - self.state_blocks) * size]
        if len(needs) <= self.free:
            for live in needs:
                live.blocks += 1
            self.free -= len(needs)
            return decoding
        preempted: set[int] = set()
        for live in needs:
            if live.req.rid in preempted:
                continue
            while self.free < 1 and live.req.rid not in preempted:
                victim = self.running[-1]
                self._preempt(victim)
                preempted.add(victim.req.rid)
            if live.req.rid not in preempted:
                live.blocks += 1
                self.free -= 1
        return [live for live in decoding if live.req.rid not in preempted]

    def _preempt(self, live: _Live) -> None:
        """Recompute: the prompt and the output so far are prefilled again on readmission (and
        that prefill yields the next token).  Swap: the cache is copied out now and back in on
        readmission, and decoding resumes where it stopped."""
        self.running.remove(live)
        self.free += live.blocks
        live.blocks = 0
        live.preemptions += 1
        if self.config.preemption == "swap" and live.prefilled >= live.to_prefill:
            self.swap_s += self.costs.swap_time_s(live.context, self.config.swap_bandwidth)
            live.swapped = True
        else:
            live.prefilled = 0
            live.refill = live.req.prompt + live.generated if live.generated else 0
        self.waiting.appendleft(live)

    def _advance(self, prefill_tokens: int, prefill_seqs: int, decoding: list[_Live]) -> float:
        cost_time, energy = self.swap_s, 0.0
        self.swap_s = 0.0
        if prefill_tokens:
            c = self.costs.prefill(prefill_tokens, max(prefill_seqs, 1))
            cost_time, energy = cost_time + c.time_s, energy + c.energy_j
        if decoding:
            mean_ctx = sum(live.context for live in decoding) / len(decoding)
            c = self.costs.decode(len(decoding), mean_ctx)
            cost_time, energy = cost_time + c.time_s, energy + c.energy_j
        start = self.now
        self.now += cost_time
        self.steps.append(Step(start, self.now, prefill_tokens, len(decoding), len(self.running),
                               len(self.waiting), self.capacity - self.free, energy))
        for live in decoding:
            live.generated += 1
        return self.now

    def _finish_done(self) -> None:
        done = [r for r in self.running if r.generated >= r.req.output]
        for live in done:
            live.finish_s = self.now
            self.running.remove(live)
            self.free += live.blocks
            live.blocks = 0
            self.finished.append(live)
        self._send_next(done)

    def _first_tokens(self, completed: list[_Live]) -> None:
        """A finished prefill yields a token at the end of the step: the request's first, or,
        after a recompute, the next one."""
        for live in completed:
            if live.first_token_s is None:
                live.first_token_s = self.now
            if live.generated == 0 or live.refill:
                live.generated += 1

    # -- schedulers

    def _continuous_step(self) -> None:
        self._admit(self.config.max_batch, reserve_output=False)
        decoding = [r for r in self.running if r.prefilled >= r.to_prefill]
        decoding = self._grow(decoding)
        budget, chunks, completed = self.config.chunk, 0, []
        prefill_tokens = 0
        for live in self.running:
            if live.prefilled >= live.to_prefill or budget == 0:
                continue
            take = min(budget, live.to_prefill - live.prefilled)
            live.prefilled += take
            budget -= take
            prefill_tokens += take
            chunks += 1
            if live.prefilled >= live.to_prefill:
                completed.append(live)
        if not prefill_tokens and not decoding:
            self._stall()
            return
        self._advance(prefill_tokens, chunks, decoding)
        self._first_tokens(completed)
        self._finish_done()

    def _pipelined_step(self) -> None:
        """One pipeline round: joining users' whole prompts stream in, every user decodes."""
        joined = self._admit(self.config.max_batch, reserve_output=False)
        decoding = self._grow([r for r in self.running if r not in joined])
        prefill_tokens = sum(live.to_prefill for live in joined)
        for live in joined:
            live.prefilled = live.to_prefill
        if not prefill_tokens and not decoding:
            self._stall()
            return
        self._advance(prefill_tokens, len(joined), decoding)
        self._first_tokens(joined)
        self._finish_done()

    def _static_batch(self) -> None:
        """Prefill a whole batch (padded to its longest prompt), decode it to its longest output;
        blocks for prompt + output are reserved up front, so it never preempts."""
        batch = self._admit(self.config.max_batch, reserve_output=True)
        if not batch:
            self._stall()
            return
        longest_prompt = max(live.req.prompt for live in batch)
        longest_output = max(live.req.output for live in batch)
        for live in batch:
            live.prefilled = live.to_prefill
        self._advance(longest_prompt * len(batch), len(batch), [])
        self._first_tokens(batch)
        for live in batch:
            if live.req.output == 1:
                live.finish_s = self.now
        for _ in range(longest_output - 1):
            # Finished requests keep their slot (padding) until the batch completes.
            self._advance(0, 0, batch)
            for live in batch:
                if live.finish_s is None and live.generated >= live.req.output:
                    live.finish_s = self.now
        for live in batch:
            live.finish_s = live.finish_s if live.finish_s is not None else self.now
            live.generated = live.req.output
        self.running = [r for r in self.running if r not in batch]
        self.free += sum(live.blocks for live in batch)
        self.finished += batch
        self._send_next(batch)
        self._arrive()

    def _stall(self) -> None:
        """Nothing can run (the cache is full of prompts waiting for room): wait for an arrival
        would not help, so this is a configuration the chip cannot serve."""
        raise AccelsimError(
            f"the scheduler cannot make progress with {self.capacity} KV blocks of "
            f"{self.config.block_size} tokens; raise the capacity or shorten requests")
