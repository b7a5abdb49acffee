"""KV offload to a host-memory tier: the hardware config's host link, swapped requests and
evicted prefix blocks moving through it, costed on the link, and its refusals."""
from __future__ import annotations

import json

import pytest

from accelsim.api import cost_model, resolve_hardware
from accelsim.cli import main
from accelsim.errors import AccelsimError
from accelsim.sim import kvcache
from accelsim.sim.serving import CostModel, Request, ServeConfig, queued_requests, serve

MODEL, HW = "llama-3.2-1b", "h100-sxm"


@pytest.fixture(scope="module")
def costs():
    return cost_model(MODEL, HW)


def with_host(costs: CostModel, capacity: float) -> CostModel:
    """The same model on the same chip with a host tier of ``capacity`` bytes."""
    host = costs.hw.host_memory
    assert host is not None
    hw = costs.hw.model_copy(update={"host_memory": host.model_copy(update={"capacity": capacity})})
    return CostModel(costs.model, hw)


def test_host_tiers_come_from_the_hardware_configs_with_sources():
    for name, bandwidth in (("h100-sxm", 64e9), ("h200", 64e9), ("gb200", 225e9)):
        host = resolve_hardware(name).host_memory
        assert host is not None and host.bandwidth == bandwidth and host.capacity > 1e11
        assert "source" not in host.source and len(host.source) > 40
    assert resolve_hardware("a100-sxm").host_memory is None


def test_a_transfer_is_bytes_over_the_link_bandwidth_plus_its_latency():
    hw = resolve_hardware("h100-sxm")
    tier = kvcache.host_tier(hw, 1)
    assert tier.transfer_s(1e9) == pytest.approx(1e9 / 64e9 + 6e-6, rel=1e-12)
    assert tier.transfer_s(0) == 0
    # Each chip brings its share of host memory and its own link.
    eight = kvcache.host_tier(hw, 8)
    assert (eight.capacity_bytes, eight.bandwidth) == (8 * tier.capacity_bytes, 8 * tier.bandwidth)
    with pytest.raises(AccelsimError, match="--kv-offload host needs a host_memory section.*a100-sxm has none"):
        kvcache.host_tier(resolve_hardware("a100-sxm"), 1)


def kv_bound(costs: CostModel, offload: str):
    """An offline load of 40 requests of 512 + 384 tokens in 500 blocks of 16 tokens: about
    nine requests' whole caches fit, so decodes run out of blocks and preempt."""
    reqs = queued_requests(40, prompt=512, output=384)
    return serve(reqs, costs, ServeConfig(kv_blocks=500, chunk=2048, kv_offload=offload))


def test_offload_replaces_recompute_at_a_kv_bound_load(costs):
    recompute, host = kv_bound(costs, "none"), kv_bound(costs, "host")
    assert recompute.preemptions > 0 and host.preemptions > 0
    prompts = sum(r.prompt for r in recompute.requests)
    prefilled = {name: sum(s.prefill_tokens for s in result.steps)
                 for name, result in (("recompute", recompute), ("host", host))}
    assert prefilled["recompute"] > prompts  # preempted requests were prefilled again
    assert prefilled["host"] == prompts      # swapped ones resumed where they stopped
    o = host.summary()["kv_offload"]
    assert o["recomputed_tokens"] == 0 and o["bytes_to_host"] == o["bytes_from_host"] > 0
    assert 0 < o["host_peak_bytes"] <= o["host_capacity_bytes"]
    # Every swapped byte crossed the link and came back: whole caches of whole tokens.
    assert o["bytes_to_host"] % costs.kv_bytes_per_token == 0
    # Sustained: more output per second, and shorter requests end to end.
    assert host.throughput_tokens_per_s > recompute.throughput_tokens_per_s
    assert host.percentiles("e2e_s")["mean"] < recompute.percentiles("e2e_s")["mean"]


def test_swap_time_is_charged_to_the_steps_that_copy(costs):
    """Same run with a 1000x slower host link: every step that copied is longer by the copies'
    extra time, so the run is longer by (1000 - 1) x bytes moved / bandwidth, latencies aside."""
    fast = kv_bound(costs, "host")
    host = costs.hw.host_memory
    assert host is not None
    slow_hw = costs.hw.model_copy(update={"host_memory": host.model_copy(update={"bandwidth": host.bandwidth / 1000})})
    slow = kv_bound(CostModel(costs.model, slow_hw), "host")
    moved = fast.summary()["kv_offload"]
    # Offline, every request is queued at t=0: slower copies change no scheduling decision.
    assert [s.prefill_tokens for s in slow.steps] == [s.prefill_tokens for s in fast.steps]
    busy = [sum(s.end_s - s.start_s for s in r.steps) for r in (fast, slow)]
    extra = (moved["bytes_to_host"] + moved["bytes_from_host"]) * 999 / host.bandwidth
    assert busy[1] - busy[0] == pytest.approx(extra, rel=1e-6)
    assert slow.makespan_s > fast.makespan_s


def test_a_full_host_tier_falls_back_to_recompute(costs):
    tiny = with_host(costs, capacity=costs.kv_bytes_per_token * 600)  # one swapped cache at most
    result = kv_bound(tiny, "host")
    o = result.summary()["kv_offload"]
    assert o["host_peak_bytes"] <= o["host_capacity_bytes"]
    assert o["recomputed_tokens"] > 0 and o["bytes_to_host"] > 0


def test_evicted_prefix_blocks_go_to_the_host_and_come_back_on_reuse(costs):
    """Prefixes A, B, C of 4 blocks each through a 12-block pool: C's arrival evicts A's last 2
    blocks.  Dropped, A's next request hits 2 blocks; offloaded, it hits all 4 and the 2 come
    back over the link."""
    reqs = [Request(i, i * 10.0, 80, 1, pid, 64) for i, pid in enumerate((0, 1, 2, 0))]
    dropped = serve(reqs, costs, ServeConfig(prefix_cache=True, kv_blocks=12)).summary()
    kept = serve(reqs, costs, ServeConfig(prefix_cache=True, kv_blocks=12, kv_offload="host")).summary()
    assert dropped["prefix_cache"]["hit_tokens"] == 32
    assert kept["prefix_cache"]["hit_tokens"] == 64
    two_blocks = 2 * costs.block_bytes(16)
    assert kept["kv_offload"]["bytes_to_host"] >= two_blocks
    assert kept["kv_offload"]["bytes_from_host"] == two_blocks
    # The reload is on the link: A's last TTFT pays it, and prefills 16 tokens instead of 48.
    ttft = [r["ttft_s"] for r in (dropped, kept)]
    assert ttft[0]["mean"] != ttft[1]["mean"]


def test_host_pool_drops_least_recently_offloaded_blocks_and_leaves_the_chip_order_alone():
    tier = kvcache.HostTier(capacity_bytes=3.0, bandwidth=1.0, latency_s=0.5)
    host = kvcache.HostPool(tier, block_bytes=1.0)
    cache = kvcache.PrefixCache(host)
    cache.publish(1, 0, 4)           # B: 4 blocks
    cache.release(1, 4)
    assert cache.evict(1) == 1       # B's tail goes to the host: 1 byte at 1 B/s + 0.5 s
    assert cache.take_transfer_s() == pytest.approx(1.5)
    assert (cache.prefixes[1].on_chip, cache.prefixes[1].on_host, host.used) == (3, 1, 1.0)
    cache.publish(0, 0, 2)           # A: 2 blocks, used after B ...
    cache.release(0, 2)
    cache.acquire(1, 3, 0)           # ... then B used again: A is the least recently used
    cache.release(1, 3)
    assert host.swap_out(3.0) == pytest.approx(3.5)  # room for a swapped cache: B's host block dropped
    assert (cache.prefixes[1].on_host, host.used, host.peak) == (0, 3.0, 3.0)
    assert host.swap_out(1.0) is None  # full of pinned caches: recompute instead
    assert cache.evict(1) == 1 and cache.prefixes[0].on_chip == 1  # still A first: dropping is no use
    assert cache.prefixes[0].on_host == 0  # no host room left for it: dropped


def test_cli_kv_offload_reports_bytes_moved(tmp_path, capsys):
    code = main(["serve", "--model", MODEL, "--offline", "--requests", "40", "--prompt", "512", "--output", "384",
                 "--kv-offload", "host", "--kv-memory-fraction", "0.003", "--json", "--out", str(tmp_path / "r")])
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    o = data["summary"]["kv_offload"]
    assert o["tier"] == "host" and o["link_bandwidth_bytes_per_s"] == 64e9 and o["link_latency_s"] == 6e-6
    assert "KV offload to host memory" in (tmp_path / "r" / "report.md").read_text()


def test_cli_text_shows_hit_rate_and_host_traffic(tmp_path, capsys):
    code = main(["serve", "--model", MODEL, "--offline", "--requests", "30", "--prompt", "512", "--output", "384",
                 "--shared-prefix", "256", "--prefix-cache", "--kv-offload", "host", "--kv-memory-fraction", "0.003",
                 "--out", str(tmp_path / "r")])
    assert code == 0
    out = capsys.readouterr().out
    assert "prefix cache and KV offload to host memory" in out and "swap-to-host preemption" in out
    assert "prefix: token hit rate" in out and "offload:" in out and "GB to host" in out


def test_kv_offload_without_a_host_tier_is_one_line_and_exit_2(tmp_path, capsys):
    code = main(["serve", "--model", MODEL, "--hw", "a100-sxm", "--requests", "5", "--kv-offload", "host",
                 "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "host_memory" in err and "a100-sxm" in err
    with pytest.raises(AccelsimError, match="--kv-offload must be one of none, host"):
        ServeConfig(kv_offload="disk")
