"""Prefix caching in the serving loop: shared-prefix workloads, hit rates, the TTFT it saves,
LRU eviction on a tiny pool, and its bounds (hypothesis)."""
from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import accelsim
from accelsim.api import cost_model
from accelsim.cli import main
from accelsim.errors import AccelsimError
from accelsim.sim import kvcache, load
from accelsim.sim.serving import (
    Request,
    ServeConfig,
    _Loop,
    parse_trace,
    queued_requests,
    serve,
    synthetic_requests,
)

MODEL, HW = "llama-3.2-1b", "h100-sxm"


@pytest.fixture(scope="module")
def costs():
    return cost_model(MODEL, HW)


def spaced(prompts: list[tuple[int, int, int]], gap: float = 10.0, output: int = 1) -> list[Request]:
    """Requests ``gap`` seconds apart (each ends before the next arrives): (prompt, prefix id,
    prefix tokens) each."""
    return [Request(i, i * gap, p, output, pid, plen) for i, (p, pid, plen) in enumerate(prompts)]


# --- workload -------------------------------------------------------------------------------

def test_shared_prefix_is_the_start_of_every_prompt_and_the_spread_draws_the_rest():
    reqs = synthetic_requests(200, 4.0, prompt=1024, output=64, shared_prefix=512, spread=0.8, seed=1)
    assert all(r.prefix_id == 0 and r.prefix_len == 512 for r in reqs)
    tails = [r.prompt - 512 for r in reqs]
    assert min(tails) >= 410 and max(tails) <= 512 and len(set(tails)) > 10
    # Without a prefix nothing changes: no prefix on any request, the same lengths as before.
    plain = synthetic_requests(200, 4.0, prompt=1024, output=64, spread=0.8, seed=1)
    assert all(r.prefix_id == -1 and r.prefix_len == 0 for r in plain)
    assert [r.arrival_s for r in plain] == [r.arrival_s for r in reqs]
    whole = queued_requests(5, prompt=300, output=8, shared_prefix=300)
    assert all(r.prompt == 300 and r.prefix_len == 300 for r in whole)


def test_trace_prefix_columns_map_labels_to_ids_and_check_lengths():
    rows = [{"arrival_s": "0.5", "prompt_tokens": "100", "output_tokens": "4", "prefix_id": "sys", "prefix_len": "64"},
            {"arrival_s": "0.1", "prompt_tokens": "90", "output_tokens": "4", "prefix_id": "", "prefix_len": ""},
            {"arrival_s": "0.2", "prompt_tokens": "80", "output_tokens": "4", "prefix_id": "doc", "prefix_len": "80"},
            {"arrival_s": "0.3", "prompt_tokens": "70", "output_tokens": "4", "prefix_id": "sys", "prefix_len": "64"}]
    reqs = parse_trace(rows, "t.csv")
    assert [(r.prompt, r.prefix_id, r.prefix_len) for r in reqs] == [(90, -1, 0), (80, 1, 80), (70, 0, 64), (100, 0, 64)]
    rows[3]["prefix_len"] = "71"
    with pytest.raises(AccelsimError, match="t.csv:5.*prefix_len.*must not exceed prompt_tokens"):
        parse_trace(rows, "t.csv")
    with pytest.raises(AccelsimError, match="both columns prefix_id, prefix_len"):
        parse_trace([{"arrival_s": "0", "prompt_tokens": "9", "output_tokens": "1", "prefix_id": "a"}], "t.csv")


# --- what a hit saves -----------------------------------------------------------------------

def test_a_hit_prefills_only_the_uncached_tail_attending_to_the_whole_prompt(costs):
    """Hand-worked at low load (each request alone on the chip): the first request prefills
    its L = 2048 tokens; every later one the L - P = 512 uncached tokens plus their attention to
    the P = 1536 cached ones, plus the per-request overhead, and nothing else."""
    L, P, n = 2048, 1536, 6
    reqs = spaced([(L, 0, P)] * n, output=1)
    config = ServeConfig(chunk=4096)
    cold = serve(reqs, costs, config)
    warm = serve(reqs, costs, ServeConfig(chunk=4096, prefix_cache=True))
    overhead = costs.request_overhead_s
    full = costs.prefill(L).time_s + overhead
    tail = costs.prefill(L - P).time_s + costs.cached_attention(1, L - P, P).time_s + overhead
    assert [r.ttft_s for r in cold.requests] == pytest.approx([full] * n, rel=1e-12)
    assert [r.ttft_s for r in warm.requests] == pytest.approx([full] + [tail] * (n - 1), rel=1e-12)
    # The cached share is taken off the prefill: about P / L of it, less the extra attention.
    saved = 1 - (tail - overhead) / (full - overhead)
    assert 0.6 < saved < P / L
    assert costs.cached_attention(1, L - P, P).time_s > 0


def test_hit_rate_is_zero_with_distinct_prefixes_and_one_minus_one_over_n_with_one(costs):
    n, L, P, block = 8, 600, 512, 16
    distinct = serve(spaced([(L, i, P) for i in range(n)]), costs, ServeConfig(prefix_cache=True)).summary()
    assert distinct["prefix_cache"]["request_hit_rate"] == 0 and distinct["prefix_cache"]["token_hit_rate"] == 0
    same = serve(spaced([(L, 0, P)] * n), costs, ServeConfig(prefix_cache=True)).summary()["prefix_cache"]
    assert same["request_hit_rate"] == pytest.approx(1 - 1 / n)
    assert same["token_hit_rate"] == pytest.approx((n - 1) * (P // block * block) / (n * L))
    assert same["hit_tokens"] == (n - 1) * P
    # Only full blocks are cached: a 40-token prefix in blocks of 16 shares 32.
    partial = serve(spaced([(L, 0, 40)] * 2), costs, ServeConfig(prefix_cache=True)).summary()["prefix_cache"]
    assert partial["hit_tokens"] == 32


def test_a_prompt_that_is_all_prefix_still_computes_its_last_token(costs):
    reqs = spaced([(64, 0, 64)] * 3)
    s = serve(reqs, costs, ServeConfig(prefix_cache=True)).summary()["prefix_cache"]
    assert s["hit_tokens"] == 2 * 48  # 3 of the 4 blocks: the last holds the token that makes the first output


def test_requests_in_flight_together_share_one_copy_once_it_is_computed(costs):
    """Under load a shared prefix is held once: more requests fit than without the cache."""
    reqs = queued_requests(64, prompt=1024, output=256, shared_prefix=960)
    config = ServeConfig(kv_blocks=600, chunk=4096)
    plain = serve(reqs, costs, config)
    cached = serve(reqs, costs, ServeConfig(kv_blocks=600, chunk=4096, prefix_cache=True))
    assert cached.max_running > plain.max_running
    assert cached.makespan_s < plain.makespan_s
    assert cached.summary()["prefix_cache"]["request_hit_rate"] > 0.9


# --- LRU eviction ---------------------------------------------------------------------------

def cached_blocks(costs, prefixes: list[int]) -> dict[int, int]:
    """Run requests of 80 tokens with a 64-token prefix (4 blocks of 16) each, one after the
    other, in a pool of 12 blocks (a request takes 6 while it runs); the blocks each prefix
    has on the chip at the end."""
    loop = _Loop(spaced([(80, pid, 64) for pid in prefixes]), costs,
                 ServeConfig(prefix_cache=True, kv_blocks=12), 12)
    loop.run()
    assert loop.prefix is not None
    return {pid: p.on_chip for pid, p in loop.prefix.prefixes.items()}


def test_eviction_takes_the_least_recently_used_prefix_tail_first(costs):
    # C needs 6 blocks with 4 free: A (used least recently) loses its last 2, B keeps all 4.
    assert cached_blocks(costs, [0, 1, 2]) == {0: 2, 1: 4, 2: 4}
    # A used again after B: now B is the oldest and loses its tail.
    assert cached_blocks(costs, [0, 1, 0, 2]) == {0: 4, 1: 2, 2: 4}


def test_a_partly_evicted_prefix_still_hits_its_head(costs):
    result = serve(spaced([(80, pid, 64) for pid in (0, 1, 2, 0)]), costs,
                   ServeConfig(prefix_cache=True, kv_blocks=12))
    assert result.summary()["prefix_cache"]["hit_tokens"] == 32  # A's first 2 blocks


def test_prefix_cache_unit_lru_order_and_refcounts():
    cache = kvcache.PrefixCache()
    for pid in (0, 1, 2):
        cache.publish(pid, 0, 3)
    assert cache.blocks == 9 and cache.idle == 0
    for pid in (0, 1, 2):
        cache.release(pid, 3)
    assert cache.idle == 9
    cache.acquire(0, *cache.lookup(0, 3))  # A in use: not evictable, and now most recent
    assert cache.idle == 6
    assert cache.evict(4) == 4
    assert {pid: p.on_chip for pid, p in cache.prefixes.items()} == {0: 3, 1: 0, 2: 2}
    assert cache.evict(10) == 2 and cache.prefixes[0].on_chip == 3  # held blocks stay
    cache.release(0, 3)
    assert cache.evict(10) == 3 and cache.blocks == 0


# --- bounds ---------------------------------------------------------------------------------

_COSTS = None


def shared_costs():
    global _COSTS
    if _COSTS is None:
        _COSTS = cost_model(MODEL, HW)
    return _COSTS


request_strategy = st.tuples(st.integers(1, 300), st.integers(1, 40), st.integers(-1, 3), st.integers(0, 300),
                             st.floats(0, 2))


@settings(max_examples=30, deadline=None)
@given(st.lists(request_strategy, min_size=1, max_size=25), st.integers(24, 80), st.sampled_from([1, 4, 16]),
       st.booleans())
def test_hit_tokens_never_exceed_prompt_tokens_and_blocks_never_exceed_capacity(specs, blocks, block_size, offload):
    costs = shared_costs()
    reqs = sorted(((a, p, o, pid, min(plen, p) if pid >= 0 else 0) for p, o, pid, plen, a in specs))
    requests = [Request(i, a, p, o, pid, plen) for i, (a, p, o, pid, plen) in enumerate(reqs)]
    capacity = blocks * 16 // block_size  # the same memory in blocks of the size drawn
    config = ServeConfig(prefix_cache=True, kv_blocks=capacity, block_size=block_size, chunk=64,
                         kv_offload="host" if offload else "none")
    try:
        loop = _Loop(requests, costs, config, capacity)
    except AccelsimError:
        return  # one request larger than the pool: refused, as without the cache
    prompt_tokens = sum(r.prompt for r in requests)
    advance = loop._advance

    def checked(*args, **kwargs):
        private = sum(live.blocks - live.shared for live in loop.running)
        assert loop.prefix is not None
        assert 0 <= loop.free and loop.free + private + loop.prefix.blocks == capacity
        assert loop.prefix.idle >= 0 and loop.prefix.blocks <= capacity
        # A hit never covers a whole prompt: its last token is always computed.
        assert all(live.hit < live.req.prompt for live in loop.running)
        assert all(live.hit <= live.req.prefix_len for live in loop.running)
        if loop.host is not None:
            assert 0 <= loop.host.used <= loop.host.tier.capacity_bytes + 1e-6
        return advance(*args, **kwargs)

    loop._advance = checked  # type: ignore[method-assign]
    loop.run()
    assert len(loop.finished) == len(requests)
    assert loop.hit_tokens <= loop.lookup_tokens and loop.hit_tokens < prompt_tokens + 1
    assert all(live.blocks == 0 and live.shared == 0 for live in loop.finished)
    assert loop.free + loop.prefix.blocks == capacity  # every block back, or cached


# --- where it can be asked for --------------------------------------------------------------

def test_runtime_presets_cache_prefixes_where_the_engine_does(costs):
    from accelsim.api import load_runtime
    assert load_runtime("vllm").serve_config().prefix_cache == "auto"
    assert load_runtime("sglang").serve_config().prefix_cache == "auto"
    assert load_runtime("tensorrt-llm").serve_config().prefix_cache is False
    assert load_runtime("vllm").serve_config(prefix_cache=False).prefix_cache is False
    # "auto" is off where it cannot apply (static batching) instead of refusing the run.
    reqs = spaced([(200, 0, 128)] * 3)
    static = serve(reqs, costs, ServeConfig(scheduler="static", prefix_cache="auto"))
    assert "prefix_cache" not in static.summary()
    with pytest.raises(AccelsimError, match="--prefix-cache needs --scheduler continuous"):
        serve(reqs, costs, ServeConfig(scheduler="static", prefix_cache=True))


def test_python_serve_reports_the_hit_rate():
    report = accelsim.serve(MODEL, HW, runtime="vllm", concurrency=4, requests=24, prompt=512, output=16,
                            shared_prefix=384, curve=[4])
    assert report.summary["prefix_cache"]["request_hit_rate"] > 0.8
    off = accelsim.serve(MODEL, HW, runtime="vllm", concurrency=4, requests=24, prompt=512, output=16,
                         shared_prefix=384, curve=[4], prefix_cache=False)
    assert "prefix_cache" not in off.summary
    assert report.summary["ttft_s"]["p50"] < off.summary["ttft_s"]["p50"]


def test_cli_serve_json_and_report_show_the_hit_rate(tmp_path, capsys):
    code = main(["serve", "--model", MODEL, "--concurrency", "4", "--requests", "24", "--prompt", "512",
                 "--output", "16", "--shared-prefix", "384", "--prefix-cache", "--json", "--out", str(tmp_path / "r")])
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    assert 0.8 < data["summary"]["prefix_cache"]["request_hit_rate"] < 1
    assert all("prefix_cache" in point for point in data["curve"])
    curve = (tmp_path / "r" / "curve.csv").read_text().splitlines()
    assert "token_hit_rate" in curve[0] and "request_hit_rate" in curve[0]
    report = (tmp_path / "r" / "report.md").read_text()
    assert "Prefix cache:" in report and "request hit rate" in report and "first 384 shared" in report


@pytest.mark.parametrize("args, message", [
    (["--shared-prefix", "-5"], "--shared-prefix"),
    (["--shared-prefix", "600", "--prompt", "512"], "--shared-prefix must be within 0..--prompt (512)"),
    (["--prefix-cache", "--scheduler", "static"], "--prefix-cache needs --scheduler continuous"),
    (["--kv-offload", "disk"], "--kv-offload"),
])
def test_bad_prefix_inputs_are_one_line_and_exit_2(tmp_path, capsys, args, message):
    code = main(["serve", "--model", MODEL, "--requests", "5", "--prompt", "512", "--out", str(tmp_path / "r"), *args])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and len(err.splitlines()) == 1


def test_shared_prefix_with_a_trace_is_refused(tmp_path, capsys):
    trace = tmp_path / "t.csv"
    trace.write_text("arrival_s,prompt_tokens,output_tokens\n0,100,4\n1,100,4\n")
    code = main(["serve", "--model", MODEL, "--trace", str(trace), "--shared-prefix", "50", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "prefix_id and prefix_len columns" in err and len(err.splitlines()) == 1


def test_a_trace_with_prefixes_serves_end_to_end(tmp_path, capsys):
    trace = tmp_path / "t.csv"
    rows = "".join(f"{i * 0.5},{300 + i},8,{'sys' if i % 2 else 'doc'},256\n" for i in range(10))
    trace.write_text("arrival_s,prompt_tokens,output_tokens,prefix_id,prefix_len\n" + rows)
    code = main(["serve", "--model", MODEL, "--trace", str(trace), "--prefix-cache", "--rates", "2", "--json",
                 "--out", str(tmp_path / "r")])
    assert code == 0
    hit = json.loads(capsys.readouterr().out)["summary"]["prefix_cache"]
    assert hit["request_hit_rate"] == pytest.approx(0.8)  # two prefixes, each missed once
    assert load.Load(trace=None, shared_prefix=10).shared_prefix == 10
