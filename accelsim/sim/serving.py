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

KV cache is paged (blocks of ``block_size`` tokens).  A request is admitted only when blocks
for its prompt are free; when a decoding request needs a block and none is free, the most
recently admitted request is preempted (its blocks freed, its progress recomputed later), as
vLLM's recompute preemption does.

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
from accelsim.density import DensityProfile
from accelsim.errors import AccelsimError, DoesNotFitError
from accelsim.hardware.spec import HardwareBase
from accelsim.model.spec import ModelSpec
from accelsim.sim.result import Result
from accelsim.transform import Parallelism
from accelsim.workload import Workload

Scheduler = Literal["static", "continuous", "pipelined"]
SCHEDULERS: tuple[str, ...] = ("static", "continuous", "pipelined")
ARRIVALS: tuple[str, ...] = ("poisson", "gamma")
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
    slo_ttft_s: float = 0.5
    slo_tpot_s: float = 0.05

    def __post_init__(self) -> None:
        if self.scheduler not in SCHEDULERS:
            raise AccelsimError(f"--scheduler must be one of {', '.join(SCHEDULERS)}, got {self.scheduler!r}")
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

def synthetic_requests(n: int, rate: float, *, arrival: str = "poisson", cv: float = 2.0,
                       prompt: int = 1024, output: int = 256, seed: int = 0) -> list[Request]:
    """``n`` requests at mean ``rate``/s: Poisson (exponential gaps) or bursty gamma gaps with
    coefficient of variation ``cv`` (shape 1/cv^2, same mean).  Lengths are fixed."""
    if not 1 <= n <= MAX_REQUESTS:
        raise AccelsimError(f"--requests must be in [1, {MAX_REQUESTS}], got {n}")
    if not rate > 0:
        raise AccelsimError(f"--rate must be > 0 requests/s, got {rate}")
    if arrival not in ARRIVALS:
        raise AccelsimError(f"--arrival must be one of {', '.join(ARRIVALS)}, got {arrival!r}")
    if prompt < 1 or output < 1:
        raise AccelsimError(f"--prompt and --output must be >= 1 tokens, got {prompt} and {output}")
    rng = np.random.default_rng(seed)
    if arrival == "poisson":
        gaps = rng.exponential(1.0 / rate, n)
    else:
        if not cv > 0:
            raise AccelsimError(f"--cv must be > 0, got {cv}")
        shape = 1.0 / cv**2
        gaps = rng.gamma(shape, 1.0 / (rate * shape), n)
    times = np.cumsum(gaps)
    return [Request(i, float(t), prompt, output) for i, t in enumerate(times)]


def parse_trace(rows: list[dict[str, str]], path: str) -> list[Request]:
    """Requests from the rows of a trace CSV with columns arrival_s, prompt_tokens, output_tokens
    (one request a row; ``accelsim.api.load_trace`` reads the file); errors name ``path``."""
    if not rows or any(c not in rows[0] for c in TRACE_COLUMNS):
        raise AccelsimError(f"trace needs columns {', '.join(TRACE_COLUMNS)}", source=path)
    requests = []
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

    def prefill(self, tokens: int, sequences: int = 1) -> StepCost:
        per_seq = math.ceil(tokens / sequences)
        b_seq, b_len = bucket(sequences), bucket(per_seq)
        return self._cost(("prefill", b_seq, b_len), Workload("prefill", sequences, per_seq, 0),
                          Workload("prefill", b_seq, b_len, 0))

    def decode(self, batch: int, mean_context: float) -> StepCost:
        context = math.ceil(mean_context)
        b_batch, b_ctx = bucket(batch), bucket(max(context, 1))
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

    def cache_capacity_bytes(self, utilisation: float) -> float:
        """Bytes of KV cache and state the chips hold beside their weights (a share of what the
        kind says is free: ``Backend.kv_capacity``)."""
        free = self.backend.kv_capacity(self.hw, self.weight_bytes, self.chips)
        if free <= 0:
            raise DoesNotFitError(f"{self.model.name} weights do not fit on {self.hw.name}")
        return free * utilisation


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

    @property
    def to_prefill(self) -> int:
        # After a preemption the prompt and the tokens already generated are recomputed.
        return self.req.prompt + (self.generated if self.preemptions else 0)

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
            "rate": self.rate, "scheduler": self.scheduler, "requests": len(self.requests),
            "ttft_s": self.percentiles("ttft_s"), "tpot_s": self.percentiles("tpot_s"),
            "e2e_s": self.percentiles("e2e_s"),
            "throughput_tokens_per_s": self.throughput_tokens_per_s,
            "throughput_requests_per_s": self.throughput_requests_per_s,
            "goodput_requests_per_s": self.goodput_requests_per_s,
            "slo": {"ttft_s": self.config.slo_ttft_s, "tpot_s": self.config.slo_tpot_s},
            "joules_per_token": self.energy_j / self.output_tokens,
            "makespan_s": self.makespan_s, "steps": len(self.steps),
            "max_running": self.max_running, "preemptions": self.preemptions,
            "kv_blocks": self.kv_blocks, "block_size": self.block_size, "notes": list(self.notes),
        }


def serve(requests: list[Request], costs: CostModel, config: ServeConfig = ServeConfig(),
          rate: float = float("nan")) -> ServeResult:
    """Run every request to completion under ``config``'s scheduler; deterministic."""
    if not requests:
        raise AccelsimError("no requests to serve")
    if config.scheduler == "pipelined" and not costs.backend.pipelined(costs.hw):
        raise AccelsimError(f"--scheduler pipelined is for chips that run their layers as a pipeline "
                            f"of users (hardwired); {costs.hw.name} does not (use continuous or static)")
    capacity = config.kv_blocks if config.kv_blocks is not None else int(
        costs.cache_capacity_bytes(config.memory_utilisation) // costs.block_bytes(config.block_size))
    loop = _Loop(requests, costs, config, capacity)
    loop.run()
    stats = [_stats(live, costs.request_overhead_s) for live in loop.finished]
    if costs.request_overhead_s > 0:
        loop.notes.append(f"request overhead {costs.request_overhead_s * 1e3:.2f} ms per request "
                          f"(gpu.request_overhead) added to TTFT and end-to-end latency, not to steps")
    stats.sort(key=lambda s: s.rid)
    return ServeResult(rate, config.scheduler, stats, loop.steps, capacity, config.block_size,
                       loop.idle_s * costs.static_w, config, tuple(loop.notes))


def _stats(live: _Live, request_overhead_s: float = 0.0) -> RequestStats:
    """Per-request figures; the per-request overhead is paid once with the first token, so it
    moves TTFT and end-to-end latency by the same amount and leaves TPOT alone."""
    req = live.req
    ttft = live.first_token_s - req.arrival_s + request_overhead_s
    tpot = (live.finish_s - live.first_token_s) / (req.output - 1) if req.output > 1 else 0.0
    return RequestStats(req.rid, req.arrival_s, req.prompt, req.output, ttft, tpot,
                        live.finish_s - req.arrival_s + request_overhead_s, live.preemptions)


class _Loop:
    def __init__(self, requests: list[Request], costs: CostModel, config: ServeConfig, blocks: int):
        self.pending = deque(sorted(requests, key=lambda r: (r.arrival_s, r.rid)))
        self.costs, self.config = costs, config
        self.capacity = blocks
        self.free = blocks
        self.waiting: deque[_Live] = deque()
        self.running: list[_Live] = []  # in admission order
        self.finished: list[_Live] = []
        self.steps: list[Step] = []
        self.now = 0.0
        self.idle_s = 0.0
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

    def _admit(self, limit: int, reserve_output: bool) -> list[_Live]:
        """FIFO admission while blocks (prompt, or prompt + output) and batch slots allow."""
        admitted = []
        while self.waiting and len(self.running) < limit:
            live = self.waiting[0]
            tokens = live.to_prefill + (live.req.output if reserve_output else 1)
            need = self._blocks_for(tokens)
            if need > self.free:
                break
            self.waiting.popleft()
            live.blocks, self.free = need, self.free - need
            self.running.append(live)
            admitted.append(live)
        return admitted

    def _grow(self, decoding: list[_Live]) -> list[_Live]:
        """Give each decoding request room for its next token, preempting the newest when the
        cache is full (recompute: blocks freed, request back at the head of the queue)."""
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
        self.running.remove(live)
        self.free += live.blocks
        live.blocks, live.prefilled = 0, 0
        live.preemptions += 1
        self.waiting.appendleft(live)

    def _advance(self, prefill_tokens: int, prefill_seqs: int, decoding: list[_Live]) -> float:
        cost_time, energy = 0.0, 0.0
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
        for live in [r for r in self.running if r.generated >= r.req.output]:
            live.finish_s = self.now
            self.running.remove(live)
            self.free += live.blocks
            live.blocks = 0
            self.finished.append(live)

    def _first_tokens(self, completed: list[_Live]) -> None:
        """A finished prefill yields the request's first token at the end of the step."""
        for live in completed:
            if live.first_token_s is None:
                live.first_token_s = self.now
            if live.generated == 0:
                live.generated = 1

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
        self._arrive()

    def _stall(self) -> None:
        """Nothing can run (the cache is full of prompts waiting for room): wait for an arrival
        would not help, so this is a configuration the chip cannot serve."""
        raise AccelsimError(
            f"the scheduler cannot make progress with {self.capacity} KV blocks of "
            f"{self.config.block_size} tokens; raise the capacity or shorten requests")
