"""Pipeline parallelism in ``serve``: a pp > 1 replica keeps pp micro-batches in flight, as its
engine does (``sim.serving._MicroLoop``), instead of running its stages one batch at a time."""
from __future__ import annotations

import itertools
import math

import pytest

from accelsim.api import cost_model, load_runtime
from accelsim.sim import serving
from accelsim.sim.serving import ServeConfig, StepCost, queued_requests, serve
from accelsim.transform import Parallelism

MODEL, HW = "llama-3.2-1b", "h100-sxm"


@pytest.fixture(scope="module")
def pp2():
    return cost_model(MODEL, HW, Parallelism(pp=2))


@pytest.fixture(scope="module")
def pp1():
    return cost_model(MODEL, HW)


def _one_batch(monkeypatch, costs, requests, config, **load):
    """The same replica run the old way: one batch in flight through its stages in sequence."""
    with monkeypatch.context() as m:
        m.setattr(costs, "pipeline_stages", 1)
        return serve(requests, costs, config, **load)


def test_pp2_offline_throughput_rises_toward_the_pp1_pair_and_stays_within_twice_one_batch(monkeypatch, pp2, pp1):
    # max_batch per micro-batch (TensorRT-LLM's rule): two micro-batches of 16 in flight where
    # the old loop ran one batch of 16 through both stages; a memory-bound decode
    config = ServeConfig(max_batch=16, chunk=2048, pp_max_batch="each")
    requests = queued_requests(96, prompt=256, output=128)
    pipelined = serve(requests, pp2, config).throughput_tokens_per_s
    one_batch = _one_batch(monkeypatch, pp2, requests, config).throughput_tokens_per_s
    pair = 2 * serve(requests[:48], pp1, config).throughput_tokens_per_s  # two PP1 replicas, half each
    assert pipelined > 1.5 * one_batch          # the stages overlap
    assert pipelined <= 2.0 * one_batch + 1e-9   # two stages can at most double it
    assert pipelined <= 1.05 * pair              # no better than the same chips as two whole replicas


def test_one_scheduler_over_all_micro_batches_decodes_as_the_in_step_groups_did(monkeypatch, pp2):
    """vLLM V1's rule (max_batch over all micro-batches): a decode-bound run keeps the same
    sequences in flight as the old step that split its batch into pp groups, so the two agree
    where their assumptions coincide."""
    config = ServeConfig(max_batch=16, chunk=2048, pp_max_batch="all")
    requests = queued_requests(96, prompt=256, output=128)
    pipelined = serve(requests, pp2, config).throughput_tokens_per_s
    one_batch = _one_batch(monkeypatch, pp2, requests, config).throughput_tokens_per_s
    assert pipelined == pytest.approx(one_batch, rel=0.01)


def test_pp2_throughput_is_monotone_in_load(pp2):
    config = ServeConfig(max_batch=64, chunk=2048)
    rates = [serve(queued_requests(64, prompt=256, output=32), pp2, config, concurrency=c).throughput_tokens_per_s
             for c in (1, 2, 4, 16, 64)]
    assert all(b >= a * (1 - 1e-9) for a, b in itertools.pairwise(rates)), rates


def test_a_single_request_has_nothing_to_overlap(monkeypatch, pp2):
    config = ServeConfig()
    request = queued_requests(1, prompt=700, output=40)
    new = serve(request, pp2, config).requests[0]
    old = _one_batch(monkeypatch, pp2, request, config).requests[0]
    assert new.ttft_s == pytest.approx(old.ttft_s, rel=1e-12)
    assert new.tpot_s == pytest.approx(old.tpot_s, rel=1e-12)


def test_two_stage_interleave_by_hand(pp2):
    """Stages of 3 s and 1 s.  A: stage 0 at 0-3, stage 1 at 3-4.  B, formed when stage 0 frees:
    3-6, 6-7.  A again (its tokens out at 4, stage 0 free at 6): 6-9, 9-10.  Static power is
    counted once over the busy wall time (0-10 s), the ops' energy as costed."""
    loop = serving._MicroLoop(queued_requests(2, prompt=8, output=4), pp2.in_flight, ServeConfig(), 1000, None, 2)
    step = StepCost(4.0, 10.0, 0, static_j=4.0, stages=(3.0, 1.0))
    end_a, energy_a = loop._step_ends(0.0, 4.0, 0.0, [step])
    end_b, energy_b = loop._step_ends(3.0, 4.0, 0.0, [step])
    end_a2, energy_a2 = loop._step_ends(max(end_a, loop.stage_free[0]), 4.0, 0.0, [step])
    assert (end_a, end_b, end_a2) == (4.0, 7.0, 10.0)
    w = pp2.static_w
    assert (energy_a, energy_b, energy_a2) == pytest.approx((6 + 4 * w, 6 + 3 * w, 6 + 3 * w))


def test_tokens_out_equal_tokens_asked_and_every_request_ends(pp2):
    requests = queued_requests(40, prompt=300, output=50, spread=0.5, seed=3)
    result = serve(requests, pp2, load_runtime("tensorrt-llm").serve_config())
    assert sorted(r.rid for r in result.requests) == list(range(40))
    assert result.output_tokens == sum(r.output for r in requests)
    # every token is a decode of some step or the first token of a finished prefill
    assert sum(s.decodes for s in result.steps) + len(requests) == result.output_tokens
    assert result.preemptions == 0
    assert all(math.isfinite(r.tpot_s) and r.ttft_s > 0 for r in result.requests)


@pytest.mark.parametrize("rule, most", [("each", 16), ("all", 8)])
def test_max_batch_counts_per_micro_batch_or_over_all(pp2, rule, most):
    config = ServeConfig(max_batch=8, chunk=4096, pp_max_batch=rule)
    result = serve(queued_requests(64, prompt=128, output=64), pp2, config)
    assert result.max_running == most


def test_a_split_pool_gives_each_micro_batch_its_share(pp2):
    config = ServeConfig(kv_blocks=40, block_size=16, pp_kv="split")
    result = serve(queued_requests(32, prompt=200, output=40), pp2, config)
    assert max(s.kv_blocks_used for s in result.steps) <= 20
    with pytest.raises(Exception, match="one request needs"):
        serve(queued_requests(2, prompt=400, output=40), pp2, config)  # 28 blocks > a share of 20


def test_presets_state_their_engines_rule():
    assert (load_runtime("tensorrt-llm").serve_config().pp_max_batch, load_runtime("tensorrt-llm").serve_config().pp_kv) == ("each", "shared")
    assert (load_runtime("vllm").serve_config().pp_max_batch, load_runtime("vllm").serve_config().pp_kv) == ("all", "shared")
    assert load_runtime("vllm-0.5.4").serve_config().pp_kv == "split"


def test_spatial_pipelines_and_one_stage_keep_their_own_loop(pp1):
    assert pp1.pipeline_stages == 1
    assert cost_model("llama-3.1-8b", "hardwired-llama-3.1-8b").pipeline_stages == 1


@pytest.mark.parametrize("load", ["offline", "rate", "concurrency", "trace"])
def test_every_load_kind_runs_micro_batches_and_conserves_tokens(pp2, load):
    from accelsim.sim.serving import parse_trace, synthetic_requests
    if load == "trace":
        rows = [{"arrival_s": str(0.01 * i), "prompt_tokens": str(100 + 7 * i), "output_tokens": str(5 + i % 9)}
                for i in range(30)]
        requests, kw = parse_trace(rows, "trace.csv"), {}
    elif load == "rate":
        requests, kw = synthetic_requests(30, 50.0, prompt=200, output=20, seed=1), {}
    elif load == "concurrency":
        requests, kw = queued_requests(30, prompt=200, output=20), {"concurrency": 6}
    else:
        requests, kw = queued_requests(30, prompt=200, output=20), {}
    result = serve(requests, pp2, ServeConfig(max_batch=8, chunk=512, pp_max_batch="each"), **kw)
    assert result.output_tokens == sum(r.output for r in requests)
    assert sum(s.decodes for s in result.steps) + len(requests) == result.output_tokens
    assert all(r.e2e_s >= r.ttft_s > 0 for r in result.requests)
    # iterations overlap: some step starts before the one before it has ended
    assert any(b.start_s < a.end_s for a, b in itertools.pairwise(result.steps))
    assert math.isfinite(result.energy_j) and result.energy_j > 0


def test_a_split_pool_with_a_prefix_cache_is_refused_in_one_line(pp2):
    config = ServeConfig(pp_kv="split", prefix_cache=True)
    with pytest.raises(Exception, match="not modelled"):
        serve(queued_requests(4, prompt=64, output=4), pp2, config)


def test_serve_cli_with_pp2_keeps_micro_batches_in_flight(tmp_path, capsys):
    import json

    from accelsim.cli import main

    def offline(pp: str) -> dict:
        code = main(["serve", "--model", MODEL, "--hw", HW, "--pp", pp, "--runtime", "tensorrt-llm", "--requests", "48",
                     "--offline", "--prompt", "256", "--output", "64", "--max-batch", "8",
                     "--out", str(tmp_path / pp), "--json"])
        assert code == 0
        return json.loads(capsys.readouterr().out)["summary"]

    one, two = offline("1"), offline("2")
    assert two["chips"] == 2 and two["max_running"] == 16  # two micro-batches of 8 (max_batch each)
    assert two["throughput_tokens_per_s"] > 1.3 * one["throughput_tokens_per_s"]
