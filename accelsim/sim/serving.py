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

A replica of pp > 1 stages that take whole batches (GPU-like) keeps pp micro-batches in flight
under the continuous scheduler, as its engine does (``_MicroLoop``: its iterations interleave
stage by stage; ``ServeConfig.pp_max_batch`` / ``pp_kv`` say how the engine splits its limits).

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

Speculative decoding (``CostModel(spec_decode=...)``, ``serve --spec-decode``): every decode step
is a round of K draft steps and a verify step of K + 1 tokens per sequence
(``CostModel.decode_round``); each sequence emits the expected accepted tokens per round
(``sim.speculative.accepted_tokens``), whole tokens with the fraction carried per request
(``_Loop._round_tokens``), and its KV grows by what it emits.

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

import copy
import functools
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
from accelsim.sim import kvcache
from accelsim.sim.result import Result
from accelsim.sim.speculative import SpecDecode, accepted_tokens
from accelsim.transform import Parallelism
from accelsim.workload import Workload

Scheduler = Literal["static", "continuous", "pipelined"]
SCHEDULERS: tuple[str, ...] = ("static", "continuous", "pipelined")
Preemption = Literal["recompute", "swap"]
PREEMPTIONS: tuple[str, ...] = ("recompute", "swap")
MemoryBasis = Literal["free", "total"]
MEMORY_BASES: tuple[str, ...] = ("free", "total")
# How a pipeline-parallel engine splits its limits over the micro-batches it keeps in flight
# (``_MicroLoop``): ``max_batch`` for each micro-batch or for all of them together; the KV pool
# shared by all of them or split evenly, one share a micro-batch.
PpBatch = Literal["each", "all"]
PP_BATCHES: tuple[str, ...] = ("each", "all")
PpKv = Literal["shared", "split"]
PP_KVS: tuple[str, ...] = ("shared", "split")
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
# Optional trace columns: requests with the same prefix_id share their first prefix_len tokens.
PREFIX_COLUMNS = ("prefix_id", "prefix_len")


@dataclass(frozen=True)
class Request:
    rid: int
    arrival_s: float
    prompt: int
    output: int
    # A shared prompt prefix: its id (-1: none) and its tokens, the first of ``prompt``.
    prefix_id: int = -1
    prefix_len: int = 0


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
    # Keep shared prefixes' KV blocks for reuse (``sim.kvcache``): True, False, or "auto" (a
    # runtime's default: on where it applies, i.e. continuous batching of an attention-only model).
    prefix_cache: bool | Literal["auto"] = False
    kv_offload: str = "none"    # "host": evicted and swapped KV goes to the host tier
    # The engine's host schedules step n+1 while the chip runs step n (SGLang's and TensorRT-LLM's
    # overlap schedulers), so a request that arrives during a step is first seen when the next
    # step starts and joins the step after it (``_Loop._fetch_time``).
    overlap_schedule: bool = False
    # False: a step that prefills runs no decodes (SGLang: a prefill batch, when one forms, runs
    # instead of the decode batch); True: prefill chunks ride in the decode step (vLLM, TRT-LLM).
    mixed_prefill: bool = True
    # Host seconds per kernel of a step that carries a prefill when the engine runs such steps
    # eagerly (no prefill CUDA graphs; decode-only steps replay captured graphs): the host then
    # issues every kernel of the forward itself, and the step lasts at least that long
    # (``eager_step_s``).  0: prefill steps are captured too, or the host keeps ahead.
    eager_prefill_kernel_s: float = 0.0
    # Pipeline parallelism (a replica of pp > 1 stages on a kind whose stages take whole
    # batches): pp micro-batches in flight, ``max_batch`` counting per micro-batch ("each":
    # TensorRT-LLM, SGLang, vLLM V0's virtual engines) or over all ("all": vLLM V1's one
    # scheduler), the KV pool shared ("shared") or split per micro-batch ("split": vLLM V0).
    pp_max_batch: PpBatch = "all"
    pp_kv: PpKv = "shared"

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
        if self.prefix_cache not in (True, False, "auto"):
            raise AccelsimError(f"prefix_cache must be true, false or 'auto', got {self.prefix_cache!r}")
        if not (0.0 <= self.eager_prefill_kernel_s <= 1.0 and math.isfinite(self.eager_prefill_kernel_s)):
            raise AccelsimError(f"eager prefill host time per kernel must be within 0..1 s, got {self.eager_prefill_kernel_s}")
        if self.pp_max_batch not in PP_BATCHES:
            raise AccelsimError(f"pp max batch must be one of {', '.join(PP_BATCHES)}, got {self.pp_max_batch!r}")
        if self.pp_kv not in PP_KVS:
            raise AccelsimError(f"pp KV pool must be one of {', '.join(PP_KVS)}, got {self.pp_kv!r}")
        if self.kv_offload not in kvcache.OFFLOADS:
            raise AccelsimError(f"--kv-offload must be one of {', '.join(kvcache.OFFLOADS)}, got {self.kv_offload!r}")


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


def _check_prefix(shared_prefix: int, prompt: int) -> None:
    if not 0 <= shared_prefix <= prompt:
        raise AccelsimError(f"--shared-prefix must be within 0..--prompt ({prompt}) tokens (the prefix is "
                            f"the start of every prompt), got {shared_prefix}")


def _with_lengths(times: np.ndarray, prompt: int, output: int, spread: float, seed: int,
                  shared_prefix: int = 0) -> list[Request]:
    # Lengths draw from their own stream, so a spread leaves the arrival times of a seed unchanged.
    rng = np.random.default_rng([seed, 1])
    if shared_prefix:
        # Every prompt is the shared prefix and its own tail; the spread draws the tail only
        # (as vLLM's random dataset does with --random-prefix-len), so the prefix is whole in
        # every request: a prompt of 1024 with a prefix of 512 at spread 0.8 is 512 + 410..512.
        tails = (spread_lengths(len(times), prompt - shared_prefix, spread, rng)
                 if prompt > shared_prefix else np.zeros(len(times), dtype=int))
        outputs = spread_lengths(len(times), output, spread, rng)
        return [Request(i, float(t), shared_prefix + int(p), int(o), 0, shared_prefix)
                for i, (t, p, o) in enumerate(zip(times, tails, outputs))]
    prompts = spread_lengths(len(times), prompt, spread, rng)
    outputs = spread_lengths(len(times), output, spread, rng)
    return [Request(i, float(t), int(p), int(o)) for i, (t, p, o) in enumerate(zip(times, prompts, outputs))]


def synthetic_requests(n: int, rate: float, *, arrival: str = "poisson", cv: float = 2.0,
                       prompt: int = 1024, output: int = 256, seed: int = 0,
                       spread: float = 1.0, shared_prefix: int = 0) -> list[Request]:
    """``n`` requests at mean ``rate``/s: Poisson (exponential gaps) or bursty gamma gaps with
    coefficient of variation ``cv`` (shape 1/cv^2, same mean).  Lengths are the nominal ones,
    or spread uniformly down to ``spread`` x nominal (``spread_lengths``); with
    ``shared_prefix`` P every prompt starts with the same P tokens (prefix id 0)."""
    if not 1 <= n <= MAX_REQUESTS:
        raise AccelsimError(f"--requests must be in [1, {MAX_REQUESTS}], got {n}")
    if not rate > 0:
        raise AccelsimError(f"--rate must be > 0 requests/s, got {rate}")
    if arrival not in ARRIVALS:
        raise AccelsimError(f"--arrival must be one of {', '.join(ARRIVALS)}, got {arrival!r}")
    _check_lengths(prompt, output, spread)
    _check_prefix(shared_prefix, prompt)
    rng = np.random.default_rng(seed)
    if arrival == "poisson":
        gaps = rng.exponential(1.0 / rate, n)
    else:
        if not cv > 0:
            raise AccelsimError(f"--cv must be > 0, got {cv}")
        shape = 1.0 / cv**2
        gaps = rng.gamma(shape, 1.0 / (rate * shape), n)
    return _with_lengths(np.cumsum(gaps), prompt, output, spread, seed, shared_prefix)


def queued_requests(n: int, *, prompt: int = 1024, output: int = 256, seed: int = 0,
                    spread: float = 1.0, shared_prefix: int = 0) -> list[Request]:
    """``n`` requests all queued at t=0, in order: the offline load, and the order in which a
    closed loop sends them (``serve(..., concurrency=N)`` rewrites their send times)."""
    if n < 1:
        raise AccelsimError(f"--requests must be >= 1, got {n}")
    _check_lengths(prompt, output, spread)
    _check_prefix(shared_prefix, prompt)
    return _with_lengths(np.zeros(n), prompt, output, spread, seed, shared_prefix)


def parse_trace(rows: list[dict[str, str]], path: str) -> list[Request]:
    """Requests from the rows of a trace CSV with columns arrival_s, prompt_tokens, output_tokens
    (one request a row; ``accelsim.api.load_trace`` reads the file); errors name ``path``.
    Optional columns prefix_id (any label; empty: none) and prefix_len (tokens, at most the
    prompt) say which requests start with the same prefix."""
    if not rows or any(c not in rows[0] for c in TRACE_COLUMNS):
        raise AccelsimError(f"trace needs columns {', '.join(TRACE_COLUMNS)}", source=path)
    prefixes = _trace_prefixes(rows, path) if any(c in rows[0] for c in PREFIX_COLUMNS) else None
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
        if prefixes is not None and prefixes[line - 2][1] > prompt:
            raise AccelsimError(f"prefix_len ({prefixes[line - 2][1]}) must not exceed prompt_tokens ({prompt})",
                                source=f"{path}:{line}")
        requests.append((arrival, prompt, output))
    if prefixes is None:
        requests.sort(key=lambda r: r[0])
        return [Request(i, a, p, o) for i, (a, p, o) in enumerate(requests)]
    order = sorted(range(len(requests)), key=lambda k: requests[k][0])  # stable: ties keep file order
    return [Request(i, *requests[k], *prefixes[k]) for i, k in enumerate(order)]


def _trace_prefixes(rows: list[dict[str, str]], path: str) -> list[tuple[int, int]]:
    """(prefix id, prefix tokens) of every trace row: labels become ids in order of appearance."""
    if any(c not in rows[0] for c in PREFIX_COLUMNS):
        raise AccelsimError(f"a trace with prefixes needs both columns {', '.join(PREFIX_COLUMNS)}", source=path)
    ids: dict[str, int] = {}
    out = []
    for line, row in enumerate(rows, start=2):
        label, length = (row.get("prefix_id") or "").strip(), (row.get("prefix_len") or "").strip()
        if not label:
            out.append((-1, 0))
            continue
        try:
            tokens = int(length)
        except ValueError:
            tokens = -1
        if not 0 <= tokens <= MAX_TOKENS:
            raise AccelsimError(f"prefix_len must be an integer in [0, {MAX_TOKENS}] where prefix_id is given, "
                                f"got {length[:40]!r}", source=f"{path}:{line}")
        out.append((ids.setdefault(label, len(ids)), tokens))
    return out


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

@functools.cache  # every step buckets its shape; few distinct values
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
    # The kernels the step launches (its costed ops): what an eager step's host issues one by
    # one (``ServeConfig.eager_prefill_kernel_s``).
    kernels: int = 0
    # Of ``energy_j``, the chips' static power over the step (the micro-batch loop counts static
    # power over wall time instead, since its steps overlap), and each pipeline stage's time at
    # the step's batch (a cost model costing one group: ``CostModel.in_flight``).
    static_j: float = 0.0
    stages: tuple[float, ...] = ()


class CostModel:
    """Memoised step costs for one model on one chip (shared across request rates)."""

    def __init__(self, model: ModelSpec, hw: HardwareBase, parallelism: Parallelism | None = None,
                 density: DensityProfile | None = None, spec_decode: SpecDecode | None = None,
                 draft: ModelSpec | None = None, **dtypes: str | None):
        self.density = density  # every step's Workload carries it
        # Speculative decoding (``decode_round``): ``draft`` is the draft model, None for the
        # target's own MTP module.
        self.spec_decode, self.draft = spec_decode, draft
        self.model = model
        self.hw = hw
        self.backend = hardware.backend(self.hw)
        # The options every step is costed with (``pipeline.model_step``'s keywords).
        self.dtypes: dict[str, Any] = {**dtypes, **({"parallelism": parallelism} if parallelism else {})}
        self.memo: dict[tuple, StepCost] = {}
        self.one_group = False  # ``in_flight``: each step costed as one group through the stages
        self.decodes: dict[tuple[int, int], StepCost] = {}  # (batch, context) -> its bucket's cost
        self.calls = 0
        try:
            probe = self._simulate(Workload("decode", 1, 1, 0))
        except DoesNotFitError as err:
            if err.shortfall is None:
                raise
            # The probe is ours, not the user's: say what cannot be served, in serve's options.
            raise DoesNotFitError(
                f"{model.name} cannot be served on {hw.name}: one request {err.shortfall}; use more chips (--tp/--pp) or a narrower --weight-dtype/--kv-dtype",
                shortfall=err.shortfall) from None
        # Footprints from ``simulate`` are system totals, so capacity is counted over all chips:
        # those asked for, or those a kind that sizes its own system chose for the model.
        self.chips = probe.chips
        # A draft runs in the target's layout (``draft_layout``) -- except on a system that sized
        # itself, where, as under `accelsim run`, the draft sizes its own: one stage of the
        # target's would not hold it.
        self.draft_dtypes = dict(self.dtypes)
        self_sized = parallelism is None and self.backend.spans_chips(self.hw)
        if self_sized:
            # Serve on that one system, in the layout it chose (pure pipeline stages may not
            # split an op a tensor split does): every step runs on the chips the capacity counts.
            self.dtypes["parallelism"] = Parallelism(tp=probe.system.get("tp", 1), pp=probe.system.get("pp", 1))
        self.weight_bytes = probe.footprint_bytes.get("weight", 0.0)
        self.state_bytes_per_seq = probe.footprint_bytes.get("state", 0.0)
        # One cached token; 0 for purely recurrent models, whose memory per user is their state.
        self.kv_bytes_per_token = probe.footprint_bytes.get("kv_cache", 0.0)
        if spec_decode is not None and not self_sized:
            # The draft lives on the same chips: its weights and its own KV cache (one entry per
            # token of every sequence, as the target's) come out of the same pool.  (On a system
            # that sized itself the draft's own chips hold them.)
            footprint = self._simulate_draft(Workload("decode", 1, 1, 0)).footprint_bytes
            self.weight_bytes += footprint.get("weight", 0.0)
            self.kv_bytes_per_token += footprint.get("kv_cache", 0.0)
        self.static_w = self.hw.power.static * self.chips  # drawn while idle between requests
        # The runtime's per-request work (``Backend.request_overhead``): it delays a request's
        # first token, and so everything after it, but occupies no chip step.
        self.request_overhead_s = float(self.backend.request_overhead(self.hw))

    def _simulate(self, workload: Workload) -> Result:
        self.calls += 1
        step = pipeline.micro_batch_step if self.one_group else pipeline.model_step
        return step(self.model, self.hw, replace(workload, density=self.density), **self.dtypes).result

    def _simulate_draft(self, workload: Workload) -> Result:
        """One draft step (``pipeline.draft_step``), dense: a density profile describes the
        target's activations, not the draft's."""
        self.calls += 1
        return pipeline.draft_step(self.model, self.draft, self.hw, workload, **self.draft_dtypes).result

    def _cost(self, key: tuple, exact: Workload, bucketed: Workload, draft: bool = False) -> StepCost:
        if key not in self.memo:
            simulate = self._simulate_draft if draft else self._simulate
            try:
                result = simulate(bucketed)
            except DoesNotFitError:
                # The bucket overshoots capacity; the exact shape was admitted, so it fits.
                result = simulate(exact)
            self.memo[key] = StepCost(result.latency_s, result.energy_total_j, len(result.ops),
                                      result.energy_j.get("static", 0.0),
                                      tuple(result.system.get("stage_latency_s", ())))
        return self.memo[key]

    @functools.cached_property
    def pipeline_stages(self) -> int:
        """Stages the serving loop keeps micro-batches in flight over: the layout's pp where the
        stages take whole batches (a GPU-like step), else 1: one stage, or a spatial pipeline
        whose own round rule already overlaps its groups of users (hardwired, dataflow)."""
        layout = self.dtypes.get("parallelism")
        pp = layout.pp if isinstance(layout, Parallelism) else 1
        if pp <= 1 or self.backend.pipelined(self.hw) or self.backend.streams_prefill(self.hw):
            return 1
        return pp

    @functools.cached_property
    def in_flight(self) -> CostModel:
        """This cost model costing every step as one group of users through the pipeline
        stages (``pipeline.run(one_group=True)``), with each stage's time: what one micro-batch
        of a pipeline-parallel engine runs.  Its own memo, kept across serving runs."""
        sibling = copy.copy(self)
        sibling.memo, sibling.decodes, sibling.one_group = {}, {}, True
        return sibling

    @functools.cached_property
    def attention_dp(self) -> int:  # read on every step: the layout does not change
        layout = self.dtypes.get("parallelism")
        return layout.dp if isinstance(layout, Parallelism) else 1

    def _ranks(self, sequences: int) -> int:
        """Decode sequences as attention data parallelism runs them (``--dp-attn``): a batch of
        at least ``dp`` is padded to a multiple of it, since every rank steps with the busiest."""
        dp = self.attention_dp
        return sequences if sequences <= dp else -(-sequences // dp) * dp

    # prefill and decode run every step: a memo hit builds no Workload (they are only for a miss)
    def prefill(self, tokens: int, sequences: int = 1) -> StepCost:
        # Attention data parallelism balances a step's prompt tokens over its ranks, so more
        # sequences than ranks are costed as one sequence of tokens/dp per rank (its attention
        # as one prompt of that length: never less than the shorter prompts it stands for).
        dp = self.attention_dp
        sequences = min(sequences, dp) if dp > 1 else sequences
        per_seq = math.ceil(tokens / sequences)
        # Up to one sequence per rank: a bucket past dp would not split evenly over the ranks.
        b_seq, b_len = (min(bucket(sequences), dp) if dp > 1 else bucket(sequences)), bucket(per_seq)
        key = ("prefill", b_seq, b_len)
        return self.memo.get(key) or self._cost(key, Workload("prefill", sequences, per_seq, 0),
                                                Workload("prefill", b_seq, b_len, 0))

    def decode(self, batch: int, mean_context: float) -> StepCost:
        context = math.ceil(mean_context)
        # Most steps repeat an exact (batch, context) seen before: one look-up, no bucketing.
        known = self.decodes.get((batch, context))
        if known is not None:
            return known
        ranks = self._ranks(batch)
        b_batch, b_ctx = self._ranks(bucket(ranks)), bucket(max(context, 1))
        key = ("decode", b_batch, b_ctx)
        cost = self.memo.get(key) or self._cost(key, Workload("decode", ranks, 1, context),
                                                Workload("decode", b_batch, 1, b_ctx))
        self.decodes[(batch, context)] = cost
        return cost

    def decode_round(self, batch: int, mean_context: float) -> tuple[StepCost, StepCost]:
        """Speculative decoding's round in place of a decode step: (the K draft steps, each
        costed at the round's starting context as ``api.speculative`` does; the verify step,
        a decode of K + 1 tokens per sequence), bucketed as ``decode``."""
        if self.spec_decode is None:
            raise AccelsimError("decode_round needs a cost model built with spec_decode")
        k = self.spec_decode.k
        context = math.ceil(mean_context)
        batch = self._ranks(batch)
        b_batch, b_ctx = self._ranks(bucket(batch)), bucket(max(context, 1))
        key = ("draft", b_batch, b_ctx)
        draft = self.memo.get(key) or self._cost(key, Workload("decode", batch, 1, context),
                                                 Workload("decode", b_batch, 1, b_ctx), draft=True)
        key = ("verify", b_batch, b_ctx)
        verify = self.memo.get(key) or self._cost(
            key, Workload("decode", batch, 1, context, spec_tokens=k),
            Workload("decode", b_batch, 1, b_ctx, spec_tokens=k))
        return StepCost(k * draft.time_s, k * draft.energy_j), verify

    def cached_attention(self, sequences: int, tokens: float, context: float) -> StepCost:
        """What a prefill of ``tokens`` per sequence after ``context`` cached tokens (a prefix
        cache hit) costs beyond ``prefill`` of the same tokens from scratch: its queries also
        attend to, and read, the cached KV.  Costed as the difference of two steps computing
        ``tokens`` queries per sequence (a decode step verifying that many tokens) with and
        without the cached context, so the weight pass and fixed overheads cancel."""
        q, ctx = math.ceil(tokens), math.ceil(context)
        b_seq, b_q, b_ctx = bucket(sequences), bucket(max(q, 1)), bucket(max(ctx, 1))
        key = ("cached", b_seq, b_q, b_ctx)
        with_ctx = self.memo.get(key) or self._cost(key, Workload("decode", sequences, 1, ctx, spec_tokens=q - 1),
                                                    Workload("decode", b_seq, 1, b_ctx, spec_tokens=b_q - 1))
        key = ("cached", b_seq, b_q, 0)
        without = self.memo.get(key) or self._cost(key, Workload("decode", sequences, 1, 0, spec_tokens=q - 1),
                                                   Workload("decode", b_seq, 1, 0, spec_tokens=b_q - 1))
        return StepCost(max(0.0, with_ctx.time_s - without.time_s), max(0.0, with_ctx.energy_j - without.energy_j))

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
            # The weights' share of this memory is what they leave free: all their bytes on a
            # chip that holds them there, none on one with its weights in silicon.
            total = self.backend.kv_capacity(self.hw, 0.0, self.chips)
            pool = total * utilisation - (total - free)
            if pool <= 0:
                raise DoesNotFitError(f"{self.model.name} weights take more than {utilisation:g} of "
                                      f"{self.hw.name}'s memory (the runtime's KV memory fraction)")
            return pool
        return free * utilisation

    def swap_time_s(self, tokens: int, bandwidth: float) -> float:
        """Seconds to copy one sequence's cache (``tokens`` of KV and its state) one way."""
        return (tokens * self.kv_bytes_per_token + self.state_bytes_per_seq) / bandwidth


# --- the scheduler loop ---------------------------------------------------------------------

@dataclass(slots=True)  # slots: the loop reads these fields for every running request every step
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
    shared: int = 0  # of ``blocks``, those in the prefix cache (referenced, not owned)
    hit: int = 0  # prompt tokens the prefix cache supplied to the current prefill
    host_bytes: float = 0.0  # its swapped cache pinned in the host tier
    credit: float = 0.0  # speculative decoding: expected tokens earned but not yet emitted (< 1)
    # ``req.prompt`` and ``req.output`` one attribute away: the loop reads them for every running
    # request every step.
    prompt: int = field(init=False)
    output: int = field(init=False)

    def __post_init__(self) -> None:
        self.prompt, self.output = self.req.prompt, self.req.output

    @property
    def to_prefill(self) -> int:
        return self.refill or self.prompt

    @property
    def context(self) -> int:
        return self.prompt + self.generated


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

    @classmethod
    def record(cls, start_s: float, end_s: float, prefill_tokens: int, decodes: int, running: int,
               waiting: int, kv_blocks_used: int, energy_j: float) -> Step:
        """``Step(...)`` at under half the cost (the serving loop records one every step): a
        frozen dataclass's ``__init__`` sets its fields one ``object.__setattr__`` at a time;
        this fills them in at once.  Equal to, and hashing as, the ``Step`` built the usual way."""
        step = object.__new__(cls)
        step.__dict__.update(start_s=start_s, end_s=end_s, prefill_tokens=prefill_tokens, decodes=decodes,
                             running=running, waiting=waiting, kv_blocks_used=kv_blocks_used, energy_j=energy_j)
        return step

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
class SpecStats:
    """Speculative decoding over a serving run: what was asked, the tokens its verify steps
    committed and where the rounds' time went."""

    draft: str
    k: int
    accept: float
    accepted_tokens_per_step: float  # expected per verify step and sequence (Leviathan et al.)
    sequence_steps: int    # (sequence, verify step) pairs that emitted tokens
    tokens_emitted: int    # tokens those pairs emitted (below the expectation where outputs end)
    draft_s: float         # time in draft steps
    verify_s: float        # time in verify steps
    step_s: float          # time in all steps (prefill chunks included)

    @property
    def tokens_per_sequence_step(self) -> float:
        return self.tokens_emitted / self.sequence_steps if self.sequence_steps else 0.0

    @property
    def draft_share(self) -> float:
        """Share of the speculative rounds' time spent drafting."""
        total = self.draft_s + self.verify_s
        return self.draft_s / total if total > 0 else 0.0

    @property
    def draft_share_of_steps(self) -> float:
        """Share of all step time (prefill chunks included) spent drafting."""
        return self.draft_s / self.step_s if self.step_s > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"draft": self.draft, "k": self.k, "acceptance_rate": self.accept,
                "accepted_tokens_per_step": self.accepted_tokens_per_step,
                "tokens_per_sequence_step": self.tokens_per_sequence_step,
                "draft_share_of_decode_time": self.draft_share,
                "draft_share_of_step_time": self.draft_share_of_steps, "draft_s": self.draft_s,
                "verify_s": self.verify_s, "sequence_steps": self.sequence_steps}


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
    kv: dict[str, Any] = field(default_factory=dict)  # prefix cache / KV offload figures, when on
    speculation: SpecStats | None = None  # with speculative decoding

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
            "speculative": self.speculation.to_dict() if self.speculation is not None else None,
        } | self.kv


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
    config = effective_config(costs, config)
    capacity = kv_capacity_blocks(costs, config)
    stages = costs.pipeline_stages if config.scheduler == "continuous" and costs.spec_decode is None else 1
    if stages > 1:  # a pipeline-parallel replica: micro-batches in flight, as its engine runs them
        loop: _Loop = _MicroLoop(requests, costs.in_flight, config, capacity, concurrency, stages)
    else:
        loop = _Loop(requests, costs, config, capacity, concurrency)
    loop.run()
    stats = [_stats(live, costs.request_overhead_s) for live in loop.finished]
    if costs.request_overhead_s > 0:
        loop.notes.append(f"request overhead {costs.request_overhead_s * 1e3:.2f} ms per request "
                          f"(gpu.request_overhead) added to TTFT and end-to-end latency, not to steps")
    stats.sort(key=lambda s: s.rid)
    return ServeResult(rate, config.scheduler, stats, loop.steps, capacity, config.block_size,
                       loop.idle_s * costs.static_w, config, tuple(loop.notes), concurrency,
                       is_offline(requests, concurrency), costs.chips, kv=loop.kv_summary(),
                       speculation=loop.spec_stats())


def effective_config(costs: CostModel, config: ServeConfig) -> ServeConfig:
    """``config`` for ``costs``' model: a preset's prefix cache ("auto") on wherever it applies,
    an explicit one refused where it cannot (static or pipelined batching, a recurrent state)."""
    if config.prefix_cache == "auto":
        config = replace(config, prefix_cache=config.scheduler == "continuous" and costs.kv_bytes_per_token > 0
                         and costs.state_bytes_per_seq <= 0)
    if config.prefix_cache and config.scheduler != "continuous":
        raise AccelsimError(f"--prefix-cache needs --scheduler continuous (got {config.scheduler})")
    if config.prefix_cache and (costs.kv_bytes_per_token <= 0 or costs.state_bytes_per_seq > 0):
        raise AccelsimError(f"--prefix-cache reuses attention KV blocks; {costs.model.name} keeps a "
                            f"recurrent state per request, which a prefix cache does not share")
    return config


def merged_kv_summary(summaries: list[dict[str, Any]]) -> dict[str, Any]:
    """Several replicas' ``kv_summary``s as one system's: counts and bytes summed, hit rates
    recomputed from the sums; host capacity and peak summed over the replicas' own host shares
    (the peak is then an upper bound: the replicas' peaks need not coincide)."""
    caches = [s["prefix_cache"] for s in summaries if "prefix_cache" in s]
    hosts = [s["kv_offload"] for s in summaries if "kv_offload" in s]
    out: dict[str, Any] = {}
    if caches:
        total = {k: sum(c[k] for c in caches) for k in ("hit_tokens", "prefill_tokens_looked_up",
                                                         "prefills_looked_up", "cached_blocks_at_end")}
        hits = sum(c["request_hit_rate"] * c["prefills_looked_up"] for c in caches)
        looked = total["prefill_tokens_looked_up"]
        out["prefix_cache"] = {
            "token_hit_rate": total["hit_tokens"] / looked if looked else 0.0,
            "request_hit_rate": hits / total["prefills_looked_up"] if total["prefills_looked_up"] else 0.0,
            **total}
    if hosts:
        summed = {k: sum(h[k] for h in hosts) for k in ("bytes_to_host", "bytes_from_host", "host_peak_bytes",
                                                        "host_capacity_bytes", "recomputed_tokens")}
        slowest = min(hosts, key=lambda h: h["link_bandwidth_bytes_per_s"])
        out["kv_offload"] = {"tier": "host", **summed,
                             "link_bandwidth_bytes_per_s": slowest["link_bandwidth_bytes_per_s"],
                             "link_latency_s": slowest["link_latency_s"]}
    return out


def merged_spec_stats(stats: list[SpecStats | None]) -> SpecStats | None:
    """Several decode replicas' speculative-decoding figures as one run's (same K, draft and
    acceptance on every replica; tokens, steps and times summed)."""
    given = [s for s in stats if s is not None]
    if not given:
        return None
    return replace(given[0], sequence_steps=sum(s.sequence_steps for s in given),
                   tokens_emitted=sum(s.tokens_emitted for s in given), draft_s=math.fsum(s.draft_s for s in given),
                   verify_s=math.fsum(s.verify_s for s in given), step_s=math.fsum(s.step_s for s in given))


def kv_capacity_blocks(costs: CostModel, config: ServeConfig) -> int:
    """KV blocks one replica of ``costs``' chips holds under ``config`` (``kv_blocks`` overrides)."""
    if config.kv_blocks is not None:
        return config.kv_blocks
    return int(costs.cache_capacity_bytes(config.memory_utilisation, config.memory_basis)
               // costs.block_bytes(config.block_size))


def eager_step_s(device_s: float, kernels: int, per_kernel_s: float) -> float:
    """How long a step lasts when its host issues its ``kernels`` one by one (``per_kernel_s``
    each, no CUDA graph): the chip runs each kernel as soon as it is issued, so the step ends
    with the later of its own work and the host's last launch."""
    return max(device_s, kernels * per_kernel_s)


def request_stats(req: Request, first: float | None, finish: float | None, preemptions: int,
                  request_overhead_s: float = 0.0) -> RequestStats:
    """Per-request figures from when ``req`` was sent, its first token and its end; the
    per-request overhead is paid once with the first token, so it moves TTFT and end-to-end
    latency by the same amount and leaves TPOT alone."""
    if first is None or finish is None:  # the loops only finish requests that have both
        raise AccelsimError(f"request {req.rid} finished without a first token")
    ttft = first - req.arrival_s + request_overhead_s
    tpot = (finish - first) / (req.output - 1) if req.output > 1 else 0.0
    return RequestStats(req.rid, req.arrival_s, req.prompt, req.output, ttft, tpot,
                        finish - req.arrival_s + request_overhead_s, preemptions)


def _stats(live: _Live, request_overhead_s: float = 0.0) -> RequestStats:
    return request_stats(live.req, live.first_token_s, live.finish_s, live.preemptions, request_overhead_s)


def client_queues(requests: list[Request], concurrency: int | None) -> tuple[deque[Request], deque[Request]]:
    """(sent, not yet sent): an open loop sends every request at its arrival time; a closed loop
    of N sends the first N (by id) at t=0 and each of the rest when a completion frees a slot."""
    if concurrency is None:
        return deque(sorted(requests, key=lambda r: (r.arrival_s, r.rid))), deque()
    ordered = sorted(requests, key=lambda r: r.rid)
    return deque(replace(r, arrival_s=0.0) for r in ordered[:concurrency]), deque(ordered[concurrency:])


def is_offline(requests: list[Request], concurrency: int | None) -> bool:
    """All requests queued at once (max-throughput benchmarks), as opposed to a rate or a closed loop."""
    return concurrency is None and all(r.arrival_s == 0 for r in requests) and len(requests) > 1


class _Loop:
    def __init__(self, requests: list[Request], costs: CostModel, config: ServeConfig, blocks: int,
                 concurrency: int | None = None):
        self.pending, self.unsent = client_queues(requests, concurrency)
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
        # Prefix cache and host tier (``sim.kvcache``); None when off, and then every step
        # below runs exactly as without them.
        self.host = (kvcache.HostPool(kvcache.host_tier(costs.hw, costs.chips), costs.block_bytes(config.block_size))
                     if config.kv_offload == "host" else None)
        self.prefix = kvcache.PrefixCache(self.host) if config.prefix_cache else None
        self.lookups = self.hit_requests = self.lookup_tokens = self.hit_tokens = self.recomputed = 0
        # Speculative decoding: every decode step is a round (K drafts + a verify step) that
        # earns each sequence ``per_round`` expected tokens (``_round_tokens``).
        self.spec = costs.spec_decode
        self.per_round = accepted_tokens(self.spec.accept, self.spec.k) if self.spec else 1.0
        self.most_per_round = int(self.per_round + 1 + 1e-9)  # a bound on ``_round_tokens`` (credit < 1)
        self.draft_s = self.verify_s = 0.0
        self.sequence_steps = self.tokens_emitted = 0
        need = max(self._blocks_for(r.prompt + r.output) for r in requests)
        if need > blocks:
            raise AccelsimError(
                f"one request needs {need} KV blocks of {config.block_size} tokens but the chip "
                f"holds {blocks}; shorten --prompt/--output or use a larger chip")

    def spec_stats(self) -> SpecStats | None:
        if self.spec is None:
            return None
        step_s = math.fsum(step.end_s - step.start_s for step in self.steps)
        return SpecStats(self.spec.draft, self.spec.k, float(self.spec.accept), self.per_round,
                         self.sequence_steps, self.tokens_emitted, self.draft_s, self.verify_s, step_s)

    def _round_tokens(self, live: _Live) -> int:
        """Tokens a speculative round emits for ``live``: the whole part of the expected tokens
        it has earned (its ``credit`` plus this round's ``per_round``), never past its output.
        Carrying the fraction makes a request emit, over n rounds, the whole part of n x
        expected tokens, so its output ends at the round the expectation says, never earlier
        (the KV cache grows by the same emitted tokens)."""
        whole, left = int(live.credit + self.per_round + 1e-9), live.output - live.generated
        return whole if whole <= left else max(left, 0)  # (min and max: slower, and per request)

    def _blocks_for(self, tokens: int) -> int:
        kv = -(-tokens // self.config.block_size) if self.tokens_take_blocks else 0
        return kv + self.state_blocks

    def _due(self) -> bool:
        """A sent request has reached the server by now (``_arrive`` takes it in)."""
        return bool(self.pending) and self.pending[0].arrival_s <= self.now

    def _arrive(self) -> None:
        if not (self.steps and (self.running or self.waiting)):
            # An idle engine polls its queue: whatever has arrived joins at once.
            while self.pending and self.pending[0].arrival_s <= self.now:
                self.waiting.append(_Live(self.pending.popleft()))
            return
        # A busy engine looks at its queue once per step, in the same host instant in which it
        # hands out the previous step's tokens, so a request sent in reply to those (a closed
        # loop's next request, sent when one finishes) arrives after that look: strictly earlier
        # arrivals only.
        cutoff = self._fetch_time()
        while self.pending and self.pending[0].arrival_s < cutoff:
            self.waiting.append(_Live(self.pending.popleft()))

    def _fetch_time(self) -> float:
        """When the busy engine last looked at its queue for the step starting now.  Without an
        overlap scheduler: as the step starts (now).  With one, the step starting now was
        scheduled when the previous step started (the host runs one step ahead), so it holds only
        what had arrived by then."""
        if self.config.overlap_schedule:
            return min(self.steps[-1].start_s, self.now)
        return self.now

    def _send_next(self, done: list[_Live]) -> None:
        """Closed loop: each completion sends the next request when the client sees it end."""
        for live in sorted(done, key=lambda d: (d.finish_s or 0.0, d.req.rid)):
            if self.unsent:
                sent = (live.finish_s or 0.0) + self.costs.request_overhead_s
                self.pending.append(replace(self.unsent.popleft(), arrival_s=sent))

    # Run uneventful decode steps as a stretch (``_decode_stretch``); off: every step one by one.
    decode_stretches = True

    def run(self) -> None:
        step = {"static": self._static_batch, "continuous": self._continuous_step,
                "pipelined": self._pipelined_step}[self.config.scheduler]
        stretches = self.decode_stretches and self.config.scheduler == "continuous" and self.spec is None
        while self.pending or self.waiting or self.running:
            self._arrive()
            if not self.waiting and not self.running:
                self.idle_s += self.pending[0].arrival_s - self.now
                self.now = self.pending[0].arrival_s
                continue
            if stretches and self._decode_stretch():
                continue
            step()

    def _decode_stretch(self) -> bool:
        """Continuous batching's steps while nothing happens but decoding and finishing: no
        request waits, every running one decodes, none arrives, and the blocks their tokens
        start are free.  Each such step is ``_continuous_step`` with the per-request passes
        left out: the step's context sum grows by the batch size, the requests that start a
        block and those that finish are known in advance (from how far each is from its last
        block's end and from its last token), and each request's ``generated`` is brought up
        to date when it finishes or the stretch ends (nothing reads it in between).  The steps
        (times, energies, records) are ``_advance``'s, so the results are those of stepping
        one by one.  Whether it ran any step; when not, the next step is a full one."""
        running = self.running
        if self.waiting or not running:
            return False
        newest = running[-1]  # a prompt still prefilling is most likely the newest request's
        if newest.prefilled < (newest.refill or newest.prompt):
            return False
        size, state, take_blocks = self.config.block_size, self.state_blocks, self.tokens_take_blocks
        steps = size  # at most ``size`` steps, so that each request starts at most one block
        total = 0
        starts: dict[int, list[_Live]] = {}  # steps done -> the requests whose token starts a block
        ends: dict[int, list[_Live]] = {}    # steps done -> the requests that step finishes
        for live in running:
            generated, prompt = live.generated, live.prompt
            if live.prefilled < (live.refill or prompt):
                return False  # a prompt to prefill: a full step
            if live.output - generated <= size:
                ends.setdefault(live.output - generated, []).append(live)
            context = prompt + generated
            total += context
            if take_blocks:
                # It starts a block at the step whose token is its first beyond its blocks'
                # room (``_grow``'s rule); the next one ``size`` steps later.
                first = (live.blocks - state) * size - context
                if first < size:
                    if first < 0:
                        return False  # (never: a step leaves room for the next token)
                    starts.setdefault(first, []).append(live)
        n, done, gone = len(running), 0, False
        decoding = list(running)
        while done < steps and running:
            if done and self._due():
                break
            needs = starts.get(done, ())
            if gone and needs:  # a finished request starts nothing
                needs = [live for live in needs if live.finish_s is None]
            if len(needs) > self.free:
                break  # the full step evicts or preempts
            for live in needs:
                live.blocks += 1
            self.free -= len(needs)
            self._advance(0, 0, decoding, None, total)
            total += n
            done += 1
            finished = ends.get(done)
            if finished:  # in running order, as ``_finish_done`` finds them
                for live in finished:
                    live.generated += done
                    total -= live.prompt + live.generated
                self._finish_done(finished)
                decoding, n, gone = list(running), len(running), True
        for live in running:
            live.generated += done
        return done > 0

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
            chip, host = self._prefix_hit(live)
            new, room = need - chip, self._room(live, chip)  # cached blocks are not taken anew
            if new > room:
                break
            if not full and self.config.reserve_output > 0 and self.running:
                live.blocks = need
                fits = new + self._future_blocks(live) <= room
                live.blocks = 0
                if not fits:
                    break
            self.waiting.popleft()
            self._take_prefix(live, chip, host)
            self._reclaim(new)
            live.blocks, self.free = need, self.free - new
            if live.swapped:
                self.swap_s += self._swap_in_s(live)
                live.swapped = False
            self.running.append(live)
            admitted.append(live)
        return admitted

    def _grow(self, decoding: list[_Live]) -> list[_Live]:
        """Give each decoding request room for its next token, preempting the newest when the
        cache is full (its blocks freed, the request back at the head of the queue)."""
        size, state = self.config.block_size, self.state_blocks
        # A request needs a new block only when its next token starts one (``context`` written
        # out: this runs for every decoding request every step).
        if not self.tokens_take_blocks:
            needs: list[_Live] = []
        elif self.spec is None:
            needs = [live for live in decoding
                     if live.prompt + live.generated + 1 > (live.blocks - state) * size]
        else:
            # A speculative round may emit several tokens: listed once per block it needs (the
            # bound skips the requests far from their last block's end).
            most = self.most_per_round
            needs = [live for live in decoding
                     if live.prompt + live.generated + most > (live.blocks - state) * size
                     for _ in range(-(-(live.context + self._round_tokens(live)) // size)
                                    - (live.blocks - state))]
        if self._reclaim(len(needs)):
            for live in needs:
                live.blocks += 1
            self.free -= len(needs)
            return decoding
        return self._grow_preempting(needs, decoding)

    def _grow_preempting(self, needs: list[_Live], decoding: list[_Live]) -> list[_Live]:
        """``_grow`` once the free and evictable blocks fall short of ``needs``: block by block,
        preempting the newest request until each need is met (or the needing request is gone)."""
        preempted: set[int] = set()
        for live in needs:
            if live.req.rid in preempted:
                continue
            while not self._reclaim(1) and live.req.rid not in preempted:
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
        self._release(live)
        live.preemptions += 1
        if live.prefilled >= live.to_prefill and self._swap_out(live):
            live.swapped = True
        else:
            # Tokens whose KV this discards (a prefix cache hit's were never computed here).
            self.recomputed += (live.context if live.prefilled >= live.to_prefill else live.prefilled) - live.hit
            live.prefilled = 0
            live.refill = live.req.prompt + live.generated if live.generated else 0
        self.waiting.appendleft(live)

    def _advance(self, prefill_tokens: int, prefill_seqs: int, decoding: list[_Live],
                 cached: tuple[int, float, float] | None = None, context_sum: int | None = None) -> float:
        """``cached``: (chunks after a prefix cache hit, their mean tokens, their mean cached
        context), whose attention to the cached tokens the step also pays.  ``context_sum``:
        the decoding requests' contexts before the step, when ``_decode_pass`` has already
        given each its token (None: this step gives them, as it sums them)."""
        if self.prefix is not None:
            self.swap_s += self.prefix.take_transfer_s()  # offloads and reloads of prefix blocks
        swap_s, cost_time, energy = self.swap_s, self.swap_s, 0.0
        self.swap_s = 0.0
        kernels = 0
        parts: list[StepCost] | None = [] if self.interleaving else None  # the costs this step adds
        if prefill_tokens:
            c = self.costs.prefill(prefill_tokens, max(prefill_seqs, 1))
            cost_time, energy, kernels = cost_time + c.time_s, energy + c.energy_j, c.kernels
            if parts is not None:
                parts.append(c)
        if cached is not None:
            c = self.costs.cached_attention(*cached)
            cost_time, energy = cost_time + c.time_s, energy + c.energy_j
            if parts is not None:
                parts.append(c)
        if decoding:
            n = len(decoding)
            if self.spec is None:
                if context_sum is None:
                    total = 0
                    for live in decoding:  # one pass: each context before the step, then its new token
                        total += live.prompt + live.generated
                        live.generated += 1
                else:
                    total = context_sum
                c = self.costs.decode(n, total / n)
                if parts is not None:
                    parts.append(c)
            else:
                drafts, c = self.costs.decode_round(n, sum([live.prompt + live.generated
                                                            for live in decoding]) / n)
                self.draft_s, self.verify_s = self.draft_s + drafts.time_s, self.verify_s + c.time_s
                cost_time, energy = cost_time + drafts.time_s, energy + drafts.energy_j
                self._emit_round(decoding)
            cost_time, energy = cost_time + c.time_s, energy + c.energy_j
        if kernels and self.config.eager_prefill_kernel_s > 0:
            # One forward carries the prefill and the decodes riding with it: its kernels are
            # the prefill's.  While the host issues them the chip waits, drawing static power.
            device_s = cost_time - swap_s
            step_s = eager_step_s(device_s, kernels, self.config.eager_prefill_kernel_s)
            cost_time, energy = swap_s + step_s, energy + self.costs.static_w * (step_s - device_s)
        start = self.now
        self.now, energy = self._step_ends(start, cost_time, energy, parts)
        self.steps.append(Step.record(start, self.now, prefill_tokens, len(decoding), self._in_system(),
                               len(self.waiting), self.capacity - self.free, energy))
        return self.now

    # A serving loop of one batch in flight; ``_MicroLoop`` keeps several (and collects each
    # step's costs, ``parts``, to run them stage by stage).
    interleaving = False

    def _step_ends(self, start: float, cost_time: float, energy: float,
                   parts: list[StepCost] | None) -> tuple[float, float]:
        """(when a step that starts at ``start`` ends, its energy): one batch in flight owns the
        chips, so the step runs for its whole cost."""
        return start + cost_time, energy

    def _in_system(self) -> int:
        return len(self.running)

    def _batch_limit(self) -> int:
        """Running requests this step may reach by admission (``max_batch``)."""
        return self.config.max_batch

    def _emit_round(self, decoding: list[_Live]) -> None:
        """Each decoding request emits its speculative round's tokens (``_round_tokens``) and
        carries the unspent fraction of the expectation."""
        emitted, emitting, per_round = 0, 0, self.per_round
        for live in decoding:
            tokens = self._round_tokens(live)
            live.credit += per_round - tokens
            live.generated += tokens
            emitted += tokens
            emitting += tokens > 0  # a padded, finished request emits nothing
        self.tokens_emitted += emitted
        self.sequence_steps += emitting

    def _finish_done(self, done: list[_Live] | None = None) -> None:
        """``done``: the finished requests in running order when the caller knows them."""
        if done is None:
            done = [r for r in self.running if r.generated >= r.output]
        for live in done:
            live.finish_s = self.now
            self.running.remove(live)
            self._release(live)
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

    # -- prefix cache and host tier (``sim.kvcache``): no-ops when both are off

    def _prefix_hit(self, live: _Live) -> tuple[int, int]:
        """(blocks on the chip, blocks on the host) of ``live``'s prefix the cache can supply:
        full blocks only, and never the prompt's last token (its logits make the first token)."""
        req = live.req
        if self.prefix is None or live.swapped or req.prefix_id < 0:
            return 0, 0
        size = self.config.block_size
        return self.prefix.lookup(req.prefix_id, min(req.prefix_len // size, (live.to_prefill - 1) // size))

    def _room(self, live: _Live, chip: int) -> int:
        """Blocks an admission can have: the free ones and the idle cached ones it does not hit."""
        if self.prefix is None:
            return self.free
        return self.free + self.prefix.idle - self.prefix.pins(live.req.prefix_id, chip)

    def _take_prefix(self, live: _Live, chip: int, host: int) -> None:
        """Reference the hit blocks; their tokens are not prefilled again."""
        if self.prefix is None or live.swapped:
            return
        self.lookups += 1
        self.lookup_tokens += live.to_prefill
        live.hit = 0
        if chip + host:
            self.prefix.acquire(live.req.prefix_id, chip, host)
            live.shared = chip + host
            live.hit = live.prefilled = live.shared * self.config.block_size
            self.hit_requests += 1
            self.hit_tokens += live.hit

    def _publish(self, completed: list[_Live]) -> None:
        """A finished prefill's full prefix blocks join the cache (or, where another request put
        them there first, its copies are freed)."""
        if self.prefix is None:
            return
        for live in completed:
            if live.req.prefix_id >= 0:
                full = live.req.prefix_len // self.config.block_size
                _, duplicates = self.prefix.publish(live.req.prefix_id, live.shared, full)
                live.shared = full
                self.free += duplicates

    def _reclaim(self, n: int) -> bool:
        """Evict idle cached blocks until ``n`` are free (if it can); whether ``n`` are free."""
        if self.prefix is not None and self.free < n:
            self.free += self.prefix.evict(n - self.free)
        return self.free >= n

    def _release(self, live: _Live) -> None:
        """``live`` gives its blocks back: its own are freed, its cached prefix stays cached."""
        if self.prefix is not None and live.shared:
            self.prefix.release(live.req.prefix_id, live.shared)
        self.free += live.blocks - live.shared
        live.blocks = live.shared = 0

    def _swap_out(self, live: _Live) -> bool:
        """Copy a preempted request's cache out (to the host tier if there is one and it has
        room, else over ``swap_bandwidth`` when preemption swaps); False: recompute it."""
        if self.host is not None:
            nbytes = live.context * self.costs.kv_bytes_per_token + self.costs.state_bytes_per_seq
            seconds = self.host.swap_out(nbytes)
            if seconds is None:
                return False
            live.host_bytes, self.swap_s = nbytes, self.swap_s + seconds
            return True
        if self.config.preemption == "swap":
            self.swap_s += self.costs.swap_time_s(live.context, self.config.swap_bandwidth)
            return True
        return False

    def _swap_in_s(self, live: _Live) -> float:
        if live.host_bytes and self.host is not None:
            seconds = self.host.swap_in(live.host_bytes)
            live.host_bytes = 0.0
            return seconds
        return self.costs.swap_time_s(live.context, self.config.swap_bandwidth)

    def kv_summary(self) -> dict[str, Any]:
        """The prefix cache's hit rates and the host tier's traffic (only for what is on)."""
        out: dict[str, Any] = {}
        if self.prefix is not None:
            out["prefix_cache"] = {
                "token_hit_rate": self.hit_tokens / self.lookup_tokens if self.lookup_tokens else 0.0,
                "request_hit_rate": self.hit_requests / self.lookups if self.lookups else 0.0,
                "hit_tokens": self.hit_tokens, "prefill_tokens_looked_up": self.lookup_tokens,
                "prefills_looked_up": self.lookups, "cached_blocks_at_end": self.prefix.blocks}
        if self.host is not None:
            out["kv_offload"] = {
                "tier": "host", "bytes_to_host": self.host.bytes_out, "bytes_from_host": self.host.bytes_in,
                "host_peak_bytes": self.host.peak, "host_capacity_bytes": self.host.tier.capacity_bytes,
                "link_bandwidth_bytes_per_s": self.host.tier.bandwidth, "link_latency_s": self.host.tier.latency_s,
                "recomputed_tokens": self.recomputed}
        return out

    # -- schedulers

    def _decode_pass(self) -> tuple[list[_Live], int | None, list[_Live] | None, list[_Live] | None]:
        """A step's decodes without speculation, in one pass over the running requests (this
        runs every full step; four passes were most of the loop's time): the decoding requests,
        their contexts' sum before the step, those the token each is given here finishes, and
        the requests still prefilling, all in running order.  What ``_grow`` and ``_advance``
        do, in the same order of effects.  When the blocks the new tokens start cannot all be
        found, the tokens are taken back and ``_grow`` preempts: (decoding, None, None, None),
        and ``_advance`` gives them."""
        size, state, take_blocks = self.config.block_size, self.state_blocks, self.tokens_take_blocks
        decoding: list[_Live] = []
        needs: list[_Live] = []
        finishing: list[_Live] = []
        prefilling: list[_Live] = []
        total = 0
        for live in self.running:
            generated, prompt = live.generated, live.prompt
            if live.prefilled < (live.refill or prompt):  # ``to_prefill``: still prefilling
                prefilling.append(live)
                continue
            decoding.append(live)
            total += prompt + generated
            # Its next token starts a block (``_grow``'s rule, ``context`` written out).
            if take_blocks and prompt + generated + 1 > (live.blocks - state) * size:
                needs.append(live)
            live.generated = generated = generated + 1
            if generated >= live.output:
                finishing.append(live)
        if self._reclaim(len(needs)):
            for live in needs:
                live.blocks += 1
            self.free -= len(needs)
            return decoding, total, finishing, prefilling
        for live in decoding:
            live.generated -= 1
        return self._grow_preempting(needs, decoding), None, None, None

    def _continuous_step(self) -> None:
        self._admit(self._batch_limit(), reserve_output=False)
        context_sum: int | None = None
        finishing: list[_Live] | None = None
        prefilling: list[_Live] | None = None
        if not self.config.mixed_prefill and any(r.prefilled < (r.refill or r.prompt) for r in self.running):
            decoding = self._grow([])  # a separate prefill batch: the decodes wait for the next step
        elif self.spec is None:
            decoding, context_sum, finishing, prefilling = self._decode_pass()
        else:
            decoding = self._grow([r for r in self.running if r.prefilled >= (r.refill or r.prompt)])
        if prefilling is None:  # every running request decoding (most steps): no prompt to walk
            prefilling = self.running if len(decoding) < len(self.running) else []
        budget, chunks, completed = self.config.chunk, 0, []
        prefill_tokens = hits = hit_tokens = hit_context = 0
        for live in prefilling:
            to_prefill = live.refill or live.prompt  # ``to_prefill``, written out
            if live.prefilled >= to_prefill or budget == 0:
                continue
            take = min(budget, to_prefill - live.prefilled)
            if live.hit:  # after a prefix cache hit: attends to the cached tokens too
                hits, hit_tokens, hit_context = hits + 1, hit_tokens + take, hit_context + live.prefilled
            live.prefilled += take
            budget -= take
            prefill_tokens += take
            chunks += 1
            if live.prefilled >= to_prefill:
                completed.append(live)
        if not prefill_tokens and not decoding:
            self._stall()
            return
        self._advance(prefill_tokens, chunks, decoding,
                      (hits, hit_tokens / hits, hit_context / hits) if hits else None, context_sum)
        self._publish(completed)
        self._first_tokens(completed)
        # A completed prefill's first token may finish its request too: then look at them all
        # (to keep running order).
        if finishing is not None and any(live.generated >= live.output for live in completed):
            finishing = None
        self._finish_done(finishing)

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
        for live in batch:
            live.prefilled = live.to_prefill
        self._advance(longest_prompt * len(batch), len(batch), [])
        self._first_tokens(batch)
        for live in batch:
            if live.req.output == 1:
                live.finish_s = self.now
        while any(live.generated < live.req.output for live in batch):  # longest output - 1 steps
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


class _MicroLoop(_Loop):
    """A pipeline-parallel replica as its engine runs it: ``stages`` micro-batches in flight,
    each a continuous-batching scheduler of its own over the requests it holds (a request stays
    in the micro-batch that admitted it, as in steady state on every engine: a request is
    scheduled again only once its previous iteration has left the last stage), sharing the
    waiting queue and, by ``ServeConfig.pp_kv``, the KV pool.

    Timing, an event-driven interleave over the stages: micro-batch v's next iteration is
    formed when its previous one has left the last stage and stage 0 is free; it then runs
    stage by stage, each stage starting when the iteration leaves the previous stage and the
    stage has finished whatever it ran before, so a stage never does two things at once.  Its
    stage times are the pipeline's stages at its own batch (``CostModel.in_flight``: one group,
    ``Result.system["stage_latency_s"]``), scaled to the iteration's whole time (host copies,
    an eager prefill's host bound, a power cap spread in proportion).  With one micro-batch
    busy it is exactly the one-batch loop: each iteration is its trip through the stages.  The
    micro-batch whose turn comes first is scheduled first (round robin on ties), so iterations
    start in time order and each request's first token and end are exact; what is approximate
    is the shared pool: a micro-batch's finished requests give their blocks back when its
    iteration is scheduled, up to one iteration before the tokens come out."""

    interleaving = True

    def __init__(self, requests: list[Request], costs: CostModel, config: ServeConfig, blocks: int,
                 concurrency: int | None, stages: int):
        if config.pp_kv == "split" and (config.prefix_cache or config.kv_offload != "none"):
            raise AccelsimError(f"a KV pool split over {stages} micro-batches (the runtime's pipeline-parallel "
                                f"rule) with --prefix-cache or --kv-offload is not modelled; turn them off or use --pp 1")
        share = blocks // stages if config.pp_kv == "split" else blocks
        if share < 1:
            raise AccelsimError(f"a KV pool of {blocks} blocks split over {stages} micro-batches "
                                f"(--pp {stages}) leaves none for each; raise the capacity")
        super().__init__(requests, costs, config, share, concurrency)
        self.slots: list[list[_Live]] = [[] for _ in range(stages)]
        self.free_of = [share] * stages  # each micro-batch's free blocks when the pool is split
        self.ready = [0.0] * stages        # when each micro-batch's last iteration left the pipeline
        self.turn = list(range(stages))    # round robin among micro-batches ready at once
        self.stage_free = [0.0] * stages   # when each stage finishes what it was given
        self.busy_until = 0.0              # the latest end of any iteration so far
        self.stalled = False
        self.static_w = costs.static_w

    def _in_system(self) -> int:
        return sum(len(slot) for slot in self.slots)

    def _batch_limit(self) -> int:
        """``max_batch`` as the engine counts it, and no more admissions than this iteration's
        prefill budget can start: an engine puts a waiting request into the batch it schedules
        only when it gives it prompt tokens (vLLM V1's token budget, TensorRT-LLM's
        max_num_tokens per micro-batch), so an offline queue spreads over the micro-batches
        instead of waiting, pinned, in the first."""
        limit = self.config.max_batch
        if self.config.pp_max_batch == "all":
            limit -= self._in_system() - len(self.running)
        budget = self.config.chunk - sum(live.to_prefill - live.prefilled for live in self.running
                                         if live.prefilled < live.to_prefill)
        starts = 0
        for live in self.waiting:
            if budget <= 0 or len(self.running) + starts >= limit:
                break
            budget -= live.to_prefill
            starts += 1
        return min(limit, len(self.running) + starts)

    def _step_ends(self, start: float, cost_time: float, energy: float,
                   parts: list[StepCost] | None) -> tuple[float, float]:
        """(when the iteration leaves the last stage, its energy): every stage takes its share
        of ``cost_time``, the chips' static power is counted over the wall time the pipeline
        is busy (the steps overlap), the ops' energy as costed (``parts``, not the summed
        ``energy``, whose static share assumed the chips were this step's alone)."""
        assert parts is not None  # collected whenever ``interleaving``
        per_stage = [math.fsum(col) for col in zip(*(c.stages for c in parts))]
        total = math.fsum(per_stage)
        stages = len(self.stage_free)
        # (a step costed without its stages, none here: an equal share each)
        shares = [s / total for s in per_stage] if total > 0 and len(per_stage) == stages else [1.0 / stages] * stages
        t = start
        for k, share in enumerate(shares):
            t = max(t, self.stage_free[k]) + cost_time * share
            self.stage_free[k] = t
        busy = max(0.0, t - max(start, self.busy_until))
        self.busy_until = max(self.busy_until, t)
        dynamic = math.fsum(c.energy_j - c.static_j for c in parts)
        return t, dynamic + self.static_w * busy

    def _stall(self) -> None:
        """This micro-batch cannot start anything while others hold the pool: it waits for them."""
        if self._in_system() - len(self.running) > 0:
            self.stalled = True
            return
        super()._stall()

    def _use(self, v: int) -> None:
        self.running = self.slots[v]
        if self.config.pp_kv == "split":
            self.free = self.free_of[v]

    def _keep(self, v: int) -> None:
        self.slots[v] = self.running
        if self.config.pp_kv == "split":
            self.free_of[v] = self.free

    def run(self) -> None:
        stages = len(self.slots)
        order = 0
        while self.pending or self.waiting or self._in_system():
            v = min(range(stages), key=lambda i: (self.ready[i], self.turn[i]))
            order += 1
            self.turn[v] = stages + order
            self.now = max(self.ready[v], self.stage_free[0], self.now if not self._in_system() else 0.0)
            self._use(v)
            self._arrive()
            if not self.waiting and not self._in_system():
                # Nothing anywhere: the engine idles until the next request arrives.
                arrival = self.pending[0].arrival_s
                self.idle_s += max(0.0, arrival - max(self.now, self.busy_until))
                self.now = max(self.now, arrival)
                self.ready = [max(r, self.now) for r in self.ready]
                self._keep(v)
                continue
            if not self.running and not self.waiting:
                self.ready[v] = self._next_chance(v)
                self._keep(v)
                continue
            self.stalled = False
            self._continuous_step()
            self._keep(v)
            self.ready[v] = self._next_chance(v) if self.stalled else self.now

    def _next_chance(self, v: int) -> float:
        """When micro-batch ``v``, idle now, could next start something: the next arrival or the
        next iteration end of a busy micro-batch (which may free blocks or send a request)."""
        times = [self.ready[i] for i in range(len(self.slots)) if i != v and self.slots[i]]
        if self.pending and self.pending[0].arrival_s > self.now:  # one due now waits for a busy turn
            times.append(self.pending[0].arrival_s)
        return max(self.now, min(times)) if times else self.now
