"""Disaggregated serving: a prefill pool and a decode pool, each its own chips and layout.

``--disagg prefill=HW:N[:tpX][:ppW][:epY][:dpZ],decode=HW:M[...]``: a pool of N chips holds
N / (tp x pp x dp) replicas of its layout (or N / the chips a kind that sizes its own system
chose, for dataflow systems).  A request is sent (by the load: rate, closed loop or offline) to
the prefill replica with the fewest requests in it, whose own continuous batching prefills it
(``serving._Loop`` with a one-token output); its KV cache (``CostModel.kv_bytes_per_token`` x
prompt + recurrent state, in the prefill pool's KV dtype) then crosses the KV link to the
decode replica with the fewest requests, which batches decodes continuously and never stalls on
another request's prefill (only a recompute preemption prefills there).

First token, the convention InferenceX measures: its client (vLLM's ``benchmark_serving``)
times the first streamed token, and in Dynamo / SGLang disaggregated serving the response is
streamed by the decode worker, so TTFT = queue + prefill + KV transfer + queue at the decode
replica + its first decode step.  The decode replica computes every output token (the prefill's
logits are not streamed), so TPOT = (finish - first token) / (output - 1) over decode steps only.

Pools run side by side as one discrete-event simulation: the loop (or the client) whose next
step starts first goes next, so a request handed from one pool to the other at time t is seen
by the receiving replica at its first step boundary after t; steps themselves are the serving
loop's, costed by each pool's own ``CostModel``.
"""
from __future__ import annotations

import heapq
import math
import re
from bisect import insort
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from accelsim.errors import AccelsimError
from accelsim.hardware.spec import HardwareBase
from accelsim.sim.load import Load, requests_for
from accelsim.sim.serving import (
    CostModel,
    Request,
    RequestStats,
    ServeConfig,
    ServeResult,
    Step,
    _Live,
    _Loop,
    client_queues,
    effective_config,
    is_offline,
    kv_capacity_blocks,
    merged_kv_summary,
    merged_spec_stats,
    request_stats,
)
from accelsim.transform import Parallelism

ROLES: tuple[str, ...] = ("prefill", "decode")
LAYOUT_KEYS: tuple[str, ...] = ("tp", "pp", "ep", "dp")
# The pool's own engine limit, beside its layout: ``batchN`` is the engine's max_batch_size for
# that pool (per attention-DP rank, as the engines set it), where a deployment sets one per pool
# (Dynamo recipes give the prefill and decode workers their own); absent, the run's --max-batch.
POOL_KEYS: tuple[str, ...] = LAYOUT_KEYS + ("batch",)
MAX_POOL_CHIPS = 1_000_000
# Every replica is simulated step by step; beyond this many a pool is a typo or a job for a
# per-replica run (requests spread evenly behave like one replica at 1/R of the load).
MAX_REPLICAS = 4096
SPEC_FORM = "prefill=HW:N[:tpX][:ppW][:epY][:dpZ][:batchB],decode=HW:M[:tpX][:ppW][:epY][:dpZ][:batchB]"


# --- the --disagg spec ----------------------------------------------------------------------

@dataclass(frozen=True)
class PoolSpec:
    """One pool as written: hardware (a catalogue name or YAML path, resolved by the API), its
    chips, and the layout of each replica (None: not given, i.e. 1, or the kind's own choice)."""

    role: str
    hw: str
    chips: int
    tp: int | None = None
    pp: int | None = None
    ep: int | None = None
    dp: int | None = None
    max_batch: int | None = None  # ``batchN``: this pool's engine batch limit (per rank)

    @property
    def parallelism(self) -> Parallelism | None:
        """The replica's layout; None when no key is given (one chip, or a kind that spans its
        own chips: hardwired chips take no layout at all)."""
        if self.tp is None and self.pp is None and self.ep is None and self.dp is None:
            return None
        try:
            return Parallelism(tp=self.tp or 1, pp=self.pp or 1, dp=self.dp or 1, ep=self.ep or 1)
        except AccelsimError as err:
            raise AccelsimError(f"--disagg {self.role}: {err}") from None

    def text(self) -> str:
        keys = "".join(f":{k}{getattr(self, k)}" for k in LAYOUT_KEYS if getattr(self, k) is not None)
        batch = f":batch{self.max_batch}" if self.max_batch is not None else ""
        return f"{self.role}={self.hw}:{self.chips}{keys}{batch}"


@dataclass(frozen=True)
class DisaggSpec:
    prefill: PoolSpec
    decode: PoolSpec

    def text(self) -> str:
        return f"{self.prefill.text()},{self.decode.text()}"


# ASCII digits only: str.isdigit and \d also take superscripts and other scripts' digits, which
# int() rejects or reads as a different number than the user sees.
_KEY = re.compile(r"^([a-z]+)([0-9]+)$")
_COUNT = re.compile(r"^[0-9]+$")


def _pool(part: str) -> PoolSpec:
    role, sep, rest = part.partition("=")
    role = role.strip()
    if not sep or role not in ROLES:
        raise AccelsimError(f"--disagg: each pool is ROLE=HW:N with ROLE one of {', '.join(ROLES)}, "
                            f"got {part.strip()[:60]!r} (form: {SPEC_FORM})")
    fields = [f.strip() for f in rest.split(":")]
    if len(fields) < 2 or not fields[0]:
        raise AccelsimError(f"--disagg {role}: give HW:N (hardware and chips), got {rest[:60]!r}")
    hw, count = fields[0], fields[1]
    if _COUNT.match(count) is None or not 1 <= int(count) <= MAX_POOL_CHIPS:
        raise AccelsimError(f"--disagg {role}: chips must be an integer in [1, {MAX_POOL_CHIPS}], "
                            f"got {count[:20]!r}")
    layout: dict[str, int] = {}
    for field in fields[2:]:
        match = _KEY.match(field)
        if match is None or match.group(1) not in POOL_KEYS:
            raise AccelsimError(f"--disagg {role}: layout key {field[:20]!r} is not one of "
                                f"{', '.join(k + 'N' for k in POOL_KEYS)} (N an integer >= 1)")
        key, value = match.group(1), int(match.group(2))
        if key in layout:
            raise AccelsimError(f"--disagg {role}: {key} given twice")
        if not 1 <= value <= MAX_POOL_CHIPS:
            raise AccelsimError(f"--disagg {role}: {key} must be in [1, {MAX_POOL_CHIPS}], got {value}")
        layout[key] = value
    batch = layout.pop("batch", None)
    return PoolSpec(role, hw, int(count), **layout, max_batch=batch)


def parse_disagg(text: str) -> DisaggSpec:
    """``prefill=h100-sxm:2,decode=hardwired-llama-3.1-8b:4`` -> the two pools (names are not
    resolved here: hardware paths with ',' or ':' cannot be written in this form)."""
    parts = [p for p in text.split(",")]
    pools: dict[str, PoolSpec] = {}
    for part in parts:
        pool = _pool(part)
        if pool.role in pools:
            raise AccelsimError(f"--disagg: the {pool.role} pool is given twice")
        pools[pool.role] = pool
    missing = [r for r in ROLES if r not in pools]
    if missing:
        raise AccelsimError(f"--disagg: missing the {' and '.join(missing)} pool (form: {SPEC_FORM})")
    return DisaggSpec(pools["prefill"], pools["decode"])


# --- the KV link ----------------------------------------------------------------------------

@dataclass(frozen=True)
class KvLink:
    """What one request's KV cache crosses from its prefill replica to its decode replica:
    ``bandwidth`` one way (B/s) and a fixed ``latency_s`` per transfer."""

    name: str
    bandwidth: float
    latency_s: float
    source: str

    def time_s(self, nbytes: float) -> float:
        return self.latency_s + nbytes / self.bandwidth

    def describe(self) -> str:
        return f"{self.name} ({self.bandwidth / 1e9:g} GB/s one way, {self.latency_s * 1e6:g} us per transfer)"


# source: NVIDIA ConnectX-7 (400 Gb/s NDR InfiniBand or 400GbE per port) and the DGX/HGX H100 and
# B200 systems' one ConnectX-7 port per GPU for the compute fabric (NVIDIA DGX H100 / DGX B200
# user guides): 400 Gb/s = 50 GB/s each way per GPU.  Latency: estimate (not measured here) of one
# RDMA write of a request's blocks through NIXL/UCX, a few microseconds over one switch; RoCE's
# lossless-Ethernet path is taken as twice that.  Treat both latencies as tunable.
NETWORK_LINKS: dict[str, KvLink] = {
    "infiniband": KvLink("infiniband", 50e9, 5e-6,
                         "400 Gb/s NDR InfiniBand, one ConnectX-7 port per chip (NVIDIA DGX H100/B200 "
                         "user guides); latency: estimate"),
    "roce": KvLink("roce", 50e9, 10e-6,
                   "400GbE RoCE, one ConnectX-7 port per chip (NVIDIA ConnectX-7 datasheet); latency: estimate"),
}
# The configs' own interconnect sections: NVLink on NVIDIA GPUs, Infinity Fabric, ICI, an
# ASIC's chip-to-chip links; the two names read the same sections.
SCALE_UP_LINKS: tuple[str, ...] = ("nvlink", "chip-to-chip")
KV_LINKS: tuple[str, ...] = ("nvlink", "infiniband", "roce", "chip-to-chip")


def _scale_up(hw: HardwareBase, name: str, role: str) -> KvLink:
    ic = hw.interconnect
    if ic is None:
        raise AccelsimError(f"--kv-link {name}: the {role} pool's {hw.name} has no interconnect section "
                            f"(no chip-to-chip link); use --kv-link infiniband or roce")
    # A torus chip is charged one of its links (one request's KV leaves by one port), at the
    # share of line rate the collectives get too (``interconnect.efficiency``).
    bandwidth = ic.bandwidth if ic.bandwidth is not None else ic.link_bandwidth
    if bandwidth is None:
        raise AccelsimError(f"--kv-link {name}: {hw.name}'s interconnect section gives no bandwidth")
    return KvLink(name, float(bandwidth) * ic.efficiency, float(ic.base_latency + ic.latency),
                  f"{hw.name} interconnect section: {ic.source}")


def kv_link(name: str | None, prefill: HardwareBase, decode: HardwareBase, chips: int) -> KvLink:
    """The link named, or by default: the configs' scale-up link when both pools are the same
    chip with one and fit in one of its domains together (``chips`` in all), else InfiniBand
    (pools on different nodes, or different kinds of chip, share no scale-up link).  One
    request's KV leaves one chip and lands on one chip, over the slower end's link."""
    if name is None:
        same = prefill.name == decode.name and prefill.interconnect is not None
        domain = prefill.interconnect.domain if prefill.interconnect is not None else None
        name = "chip-to-chip" if same and (domain is None or chips <= domain) else "infiniband"
    if name in NETWORK_LINKS:
        return NETWORK_LINKS[name]
    if name not in SCALE_UP_LINKS:
        raise AccelsimError(f"--kv-link must be one of {', '.join(KV_LINKS)}, got {name[:40]!r}")
    ends = (_scale_up(prefill, name, "prefill"), _scale_up(decode, name, "decode"))
    slow = min(ends, key=lambda link: link.bandwidth)
    return replace(slow, latency_s=max(e.latency_s for e in ends),
                   source="the slower end's link: " + slow.source)


# --- pools ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Pool:
    spec: PoolSpec
    costs: CostModel

    @property
    def replica_chips(self) -> int:
        return self.costs.chips

    @property
    def replicas(self) -> int:
        return self.spec.chips // self.replica_chips

    @property
    def dp(self) -> int:
        return self.costs.attention_dp

    def config(self, config: ServeConfig) -> ServeConfig:
        """The engine's limits for one replica: with attention data parallelism every rank runs
        its own scheduler over its own KV cache (source: NVIDIA Dynamo docs, 'DP Rank Routing
        (Attention Data Parallelism)': "multiple attention DP ranks run within a single worker,
        each with its own KV cache"), so the token budget per step and the batch limit, set per
        engine, hold per rank and a replica of dp ranks takes dp times each.  A pool that sets its
        own batch limit (``batchN``) replaces the run's."""
        if self.spec.max_batch is not None:
            config = replace(config, max_batch=self.spec.max_batch)
        if self.dp == 1:
            return config
        return replace(config, chunk=config.chunk * self.dp, max_batch=config.max_batch * self.dp)

    def layout(self) -> str:
        p = self.costs.dtypes.get("parallelism")
        if isinstance(p, Parallelism):
            return p.describe()
        return "1 chip" if self.costs.chips == 1 else f"{self.costs.chips} chips"


@dataclass(frozen=True)
class DisaggSystem:
    prefill: Pool
    decode: Pool
    link: KvLink

    @property
    def chips(self) -> int:
        return self.prefill.spec.chips + self.decode.spec.chips

    def describe(self) -> str:
        return "; ".join(f"{p.spec.role} {p.replicas} x {p.costs.hw.name} ({p.layout()}) = {p.spec.chips} chips"
                         for p in (self.prefill, self.decode)) + f"; KV over {self.link.describe()}"


def pool(spec: PoolSpec, costs: CostModel) -> Pool:
    """``spec`` costed by ``costs``; refuses a chip count that is not whole replicas."""
    if spec.chips % costs.chips:
        raise AccelsimError(f"--disagg {spec.role}: {spec.chips} chips is not a multiple of one replica's "
                            f"{costs.chips} chips (tp x pp x dp{', as the kind sizes it' if spec.parallelism is None else ''})")
    if spec.chips // costs.chips > MAX_REPLICAS:
        raise AccelsimError(f"--disagg {spec.role}: {spec.chips // costs.chips} replicas; at most {MAX_REPLICAS} "
                            f"per pool are simulated (each one step by step)")
    return Pool(spec, costs)


# --- the simulation -------------------------------------------------------------------------

class _PrefillLoop(_Loop):
    """A prefill replica: the serving loop on one-token requests, noting when each request's
    first prompt chunk starts (its queueing delay in this pool ends there)."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.started: dict[int, float] = {}

    def _advance(self, prefill_tokens: int, prefill_seqs: int, decoding: list[_Live],
                 cached: tuple[int, float, float] | None = None, context_sum: int | None = None) -> float:
        start = self.now
        now = super()._advance(prefill_tokens, prefill_seqs, decoding, cached, context_sum)
        if prefill_tokens:  # only a step with prompt tokens starts a prefill
            for live in self.running:
                if live.prefilled > 0 and live.req.rid not in self.started:
                    self.started[live.req.rid] = start
        return now


class _DecodeLoop(_PrefillLoop):
    """A decode replica: requests arrive with their prompt's KV already in place (prefilled
    elsewhere), and the first decode step yields the first token the client sees."""

    def _arrive(self) -> None:
        while self.pending and self.pending[0].arrival_s <= self.now:
            live = _Live(self.pending.popleft())
            live.prefilled = live.req.prompt
            self.waiting.append(live)

    def _advance(self, prefill_tokens: int, prefill_seqs: int, decoding: list[_Live],
                 cached: tuple[int, float, float] | None = None, context_sum: int | None = None) -> float:
        start = self.now
        now = _Loop._advance(self, prefill_tokens, prefill_seqs, decoding, cached, context_sum)
        for live in decoding:
            if live.first_token_s is None:
                live.first_token_s = now
                self.started[live.req.rid] = start
        return now


def _loop(kind: type[_PrefillLoop], requests: list[Request], costs: CostModel, config: ServeConfig,
          role: str) -> _PrefillLoop:
    """An empty replica loop, built over the longest request it may receive so that one that
    cannot fit is refused up front (``_Loop``'s own check), naming the pool."""
    longest = max(requests, key=lambda r: r.prompt + r.output)
    try:
        loop = kind([longest], costs, config, kv_capacity_blocks(costs, config))
    except AccelsimError as err:
        raise AccelsimError(f"--disagg {role} pool: {err}") from None
    loop.pending = deque()
    return loop


def _next_start(loop: _Loop) -> float:
    if loop.waiting or loop.running:
        return loop.now
    if loop.pending:
        return max(loop.now, loop.pending[0].arrival_s)
    return math.inf


def _in_system(loop: _Loop) -> int:
    return len(loop.pending) + len(loop.waiting) + len(loop.running)


def _route(loops: Sequence[_Loop], request: Request) -> None:
    """To the replica with the fewest requests in it (ties: the first): join-shortest-queue, as
    Dynamo's and SGLang's load-aware routers do for disaggregated workers."""
    target = min(loops, key=_in_system)
    insort(target.pending, request, key=lambda r: (r.arrival_s, r.rid))


@dataclass(frozen=True)
class PoolStats:
    role: str
    hw: str
    layout: str
    replicas: int
    chips: int
    busy_s: float  # summed over replicas
    utilisation: float  # busy share of replicas x makespan
    mean_requests: float  # requests held by a replica (running + waiting), averaged over busy time
    mean_queue_s: float  # from reaching a replica to its first step there, over requests
    max_batch: int  # the engine batch limit of one replica (all its attention-DP ranks)

    def summary(self) -> dict[str, Any]:
        return {"hw": self.hw, "layout": self.layout, "replicas": self.replicas, "chips": self.chips,
                "busy_s": self.busy_s, "utilisation": self.utilisation, "mean_requests": self.mean_requests,
                "mean_queue_s": self.mean_queue_s, "max_batch_per_replica": self.max_batch}


@dataclass(frozen=True)
class DisaggResult:
    """The combined run (every request end to end, as the client sees it) and per-pool figures."""

    result: ServeResult
    pools: tuple[PoolStats, PoolStats]
    link: KvLink
    kv_bytes: tuple[float, ...]  # per request, in rid order
    kv_transfer_s: tuple[float, ...]

    @property
    def bound(self) -> str:
        """The pool that limits the system at this load: the one requests queue longer for (a
        decode replica steps whenever anything runs, so busy time alone would always name it),
        or, when neither queues, the busier one."""
        prefill, decode = self.pools
        if prefill.mean_queue_s != decode.mean_queue_s:
            return "prefill" if prefill.mean_queue_s > decode.mean_queue_s else "decode"
        return "prefill" if prefill.utilisation > decode.utilisation else "decode"

    @property
    def balanced_ratio(self) -> float:
        """Prefill chips per decode chip that would leave both pools equally busy at this load:
        the chip-seconds each pool was busy, divided (measured, not modelled).  A decode pool's
        busy time is a ceiling on its need (continuous batching steps whenever anything runs,
        at any batch), so the hint errs towards decode chips."""
        prefill, decode = self.pools
        need_p = prefill.utilisation * prefill.chips
        need_d = decode.utilisation * decode.chips
        return need_p / need_d if need_d > 0 else math.inf

    @property
    def throughput_per_decode_chip(self) -> float:
        """Output tokens/s over the decode pool's chips: InferenceX's "output throughput per GPU"
        of a disaggregated run (its rows' output / total ratio says so in every setup)."""
        return self.result.throughput_tokens_per_s / self.pools[1].chips

    def summary(self) -> dict[str, Any]:
        kv = np.array(self.kv_bytes)
        t = np.array(self.kv_transfer_s)
        ratio = self.balanced_ratio
        disagg = {
            "pools": {p.role: p.summary() for p in self.pools}, "bound": self.bound,
            # InferenceX's "output throughput per GPU" of a disaggregated run counts decode GPUs.
            "throughput_tokens_per_s_per_decode_chip": self.throughput_per_decode_chip,
            "balanced_prefill_per_decode_chip": ratio if math.isfinite(ratio) else None,
            "kv_link": {"name": self.link.name, "bandwidth_bytes_per_s": self.link.bandwidth,
                        "latency_s": self.link.latency_s, "source": self.link.source},
            "kv_moved": {"bytes_total": float(kv.sum()), "bytes_per_request_mean": float(kv.mean()),
                         "transfer_s": {"p50": float(np.percentile(t, 50)), "p99": float(np.percentile(t, 99)),
                                        "mean": float(t.mean())}},
        }
        return {**self.result.summary(), "disagg": disagg}

    def findings(self) -> list[str]:
        s = self.summary()["disagg"]
        lines = [f"{p.role.capitalize()} pool: {p.replicas} x {p.hw} ({p.layout}), {p.chips} chips, busy "
                 f"{p.utilisation:.0%} of the run, {p.mean_requests:.1f} requests per replica on average while "
                 f"busy, requests queued {p.mean_queue_s * 1e3:.3g} ms on average before their first step there."
                 for p in self.pools]
        kv = s["kv_moved"]
        lines.append(f"KV moved: {kv['bytes_total'] / 1e9:,.3g} GB in all, {kv['bytes_per_request_mean'] / 1e6:,.3g} MB "
                     f"per request, over {self.link.describe()}: {kv['transfer_s']['mean'] * 1e3:.3g} ms per "
                     f"request on average (p99 {kv['transfer_s']['p99'] * 1e3:.3g} ms).")
        ratio = self.balanced_ratio
        hint = (f"{ratio:.2g} prefill chips per decode chip would leave both pools equally busy at this load "
                f"(measured busy chip-seconds; now {self.pools[0].chips}:{self.pools[1].chips})"
                if math.isfinite(ratio) else "the decode pool was never busy")
        lines.append(f"{self.bound.capitalize()}-bound (requests queue longest there); {hint}.")
        return lines


def serve_disagg(requests: list[Request], system: DisaggSystem, config: ServeConfig = ServeConfig(),
                 rate: float = float("nan"), concurrency: int | None = None) -> DisaggResult:
    """Every request through a prefill replica, the KV link and a decode replica; deterministic.
    Loads as ``serving.serve``: open loop at ``requests``' arrival times, or a closed loop of
    ``concurrency`` (each completion, as the client sees it, sends the next)."""
    if not requests:
        raise AccelsimError("no requests to serve")
    if concurrency is not None and concurrency < 1:
        raise AccelsimError(f"--concurrency must be >= 1 requests in flight, got {concurrency}")
    if config.scheduler != "continuous":
        raise AccelsimError(f"--disagg pools batch continuously (prefills in one pool, decodes in the "
                            f"other); --scheduler {config.scheduler} does not apply")
    pcosts, dcosts = system.prefill.costs, system.decode.costs
    # Prompts are cached where they are prefilled; a decode replica receives whole prompts' KV.
    pconfig = effective_config(pcosts, system.prefill.config(config))
    dconfig = effective_config(dcosts, replace(system.decode.config(config), prefix_cache=False))
    prefill = [_loop(_PrefillLoop, [replace(r, output=1) for r in requests], pcosts, pconfig, "prefill")
               for _ in range(system.prefill.replicas)]
    decode = [_loop(_DecodeLoop, requests, dcosts, dconfig, "decode") for _ in range(system.decode.replicas)]
    overhead = pcosts.request_overhead_s  # the front end's, paid once per request
    incoming, unsent = client_queues(requests, concurrency)
    slots: list[float] = []  # closed loop: times at which the client may send its next request
    sent: dict[int, Request] = {}
    kv_bytes: dict[int, float] = {}
    transfer: dict[int, float] = {}
    stats: list[RequestStats] = []
    prefill_lives: dict[int, _Live] = {}
    prefilled_at: dict[int, float] = {}
    loops = prefill + decode
    while True:
        slot = slots[0] if slots else math.inf
        client = min(incoming[0].arrival_s if incoming else math.inf, slot)
        starts = [_next_start(loop) for loop in loops]
        first = min(range(len(loops)), key=starts.__getitem__)
        if client == math.inf and starts[first] == math.inf:
            break
        if client <= starts[first]:  # arrivals land before a step that starts at their time
            if incoming and incoming[0].arrival_s <= slot:
                request = incoming.popleft()
            else:  # the earliest freed slot sends the next request in order
                request = replace(unsent.popleft(), arrival_s=heapq.heappop(slots))
            sent[request.rid] = request
            _route(prefill, replace(request, output=1))  # the prefill replica computes the prompt only
            continue
        loop = loops[first]
        done = len(loop.finished)
        loop._arrive()
        if not loop.waiting and not loop.running:
            loop.idle_s += max(0.0, loop.pending[0].arrival_s - loop.now)
            loop.now = max(loop.now, loop.pending[0].arrival_s)
            continue
        loop._continuous_step()
        for live in loop.finished[done:]:
            rid = live.req.rid
            end = live.finish_s if live.finish_s is not None else loop.now
            if isinstance(loop, _DecodeLoop):
                stats.append(_request_stats(sent[rid], live, prefill_lives.pop(rid), overhead))
                if len(slots) < len(unsent):  # a closed loop's client sends again when it sees the end
                    # Replicas' steps are taken in order of their starts, not their ends, so the
                    # freed slots wait in time order and the next request goes to the earliest.
                    heapq.heappush(slots, end + overhead)
                continue
            prefill_lives[rid] = live
            prefilled_at[rid] = end
            kv_bytes[rid] = live.req.prompt * pcosts.kv_bytes_per_token + pcosts.state_bytes_per_seq
            transfer[rid] = system.link.time_s(kv_bytes[rid])
            original = sent[rid]
            _route(decode, replace(original, arrival_s=end + transfer[rid]))
    stats.sort(key=lambda s: s.rid)
    end = max(loop.now for loop in loops)
    for loop in loops:  # every chip stays powered until the last step of the system ends
        loop.idle_s += max(0.0, end - loop.now)
    steps = sorted((s for loop in loops for s in loop.steps), key=lambda s: (s.start_s, s.end_s))
    idle_j = sum(loop.idle_s for loop in prefill) * pcosts.static_w + sum(loop.idle_s for loop in decode) * dcosts.static_w
    notes = [f"disaggregated: {system.describe()}",
             "TTFT = queue + prefill + KV transfer + the decode replica's first step (the decode worker streams)"]
    for loop in loops:
        notes += [n for n in loop.notes if n not in notes]
    if overhead > 0:
        notes.append(f"request overhead {overhead * 1e3:.2f} ms per request added to TTFT and end-to-end latency")
    capacity = decode[0].capacity
    combined = ServeResult(rate, "continuous", stats, steps, capacity, config.block_size, idle_j, config,
                           tuple(notes), concurrency, is_offline(requests, concurrency), system.chips,
                           kv=merged_kv_summary([loop.kv_summary() for loop in loops]),
                           speculation=merged_spec_stats([loop.spec_stats() for loop in decode]))
    makespan = combined.makespan_s
    reached_decode = {rid: done + transfer[rid] for rid, done in prefilled_at.items()}
    pools = (_pool_stats(system.prefill, prefill, makespan, {rid: r.arrival_s for rid, r in sent.items()},
                         pconfig.max_batch),
             _pool_stats(system.decode, decode, makespan, reached_decode, dconfig.max_batch))
    rids = [s.rid for s in stats]
    return DisaggResult(combined, pools, system.link, tuple(kv_bytes[r] for r in rids),
                        tuple(transfer[r] for r in rids))


def _request_stats(sent: Request, decoded: _Live, prefilled: _Live, overhead: float) -> RequestStats:
    """From the client's send to the decode replica's first token and end; preempted in either pool."""
    return request_stats(sent, decoded.first_token_s, decoded.finish_s, decoded.preemptions + prefilled.preemptions,
                         overhead)


def _pool_stats(p: Pool, loops: list[_PrefillLoop], makespan: float, reached: dict[int, float],
                max_batch: int) -> PoolStats:
    """``reached``: when each request reached this pool (rid -> time)."""
    steps: list[Step] = [s for loop in loops for s in loop.steps]
    busy = sum(s.end_s - s.start_s for s in steps)
    held = sum((s.running + s.waiting) * (s.end_s - s.start_s) for s in steps)
    span = makespan * len(loops)
    queued = [start - reached[rid] for loop in loops for rid, start in loop.started.items()]
    return PoolStats(p.spec.role, p.costs.hw.name, p.layout(), p.replicas, p.spec.chips, busy,
                     busy / span if span > 0 else 0.0, held / busy if busy > 0 else 0.0,
                     float(np.mean(queued)) if queued else 0.0, max_batch)


def run(system: DisaggSystem, config: ServeConfig, load: Load) -> DisaggResult:
    """One disaggregated run under ``load`` (``accelsim.sim.load.run``'s counterpart)."""
    requests = requests_for(load)
    if load.kind == "concurrency":
        return serve_disagg(requests, system, config, float("nan"), concurrency=int(load.value))
    return serve_disagg(requests, system, config, load.value if load.kind == "rate" else float("nan"))
