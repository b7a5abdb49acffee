"""Serving simulation: schedulers, saturation, KV paging and preemption, determinism, the CLI."""
from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from accelsim.api import cost_model, load_trace
from accelsim.cli import main
from accelsim.errors import AccelsimError
from accelsim.sim.serving import (
    Request,
    ServeConfig,
    bucket,
    serve,
    synthetic_requests,
)

MODEL, HW = "llama-3.1-8b", "h100-sxm"


@pytest.fixture(scope="module")
def costs():
    return cost_model(MODEL, HW)


def requests_at(rate, n=200, prompt=256, output=32, seed=0, **kw):
    return synthetic_requests(n, rate, prompt=prompt, output=output, seed=seed, **kw)


@given(st.integers(1, 10**7))
def test_bucket_never_rounds_down_and_is_monotone(value):
    assert bucket(value) >= value
    assert bucket(value + 1) >= bucket(value)
    assert bucket(value) <= max(value, 8) * 2 ** 0.25 + 1


def test_arrival_processes_have_the_asked_mean_and_burstiness():
    gaps = np.diff([r.arrival_s for r in synthetic_requests(20000, 5.0, seed=1)])
    assert gaps.mean() == pytest.approx(0.2, rel=0.03)
    assert gaps.std() / gaps.mean() == pytest.approx(1.0, rel=0.05)  # exponential: cv 1
    bursty = np.diff([r.arrival_s for r in synthetic_requests(20000, 5.0, arrival="gamma", cv=2.0, seed=1)])
    assert bursty.mean() == pytest.approx(0.2, rel=0.05)
    assert bursty.std() / bursty.mean() == pytest.approx(2.0, rel=0.1)


def test_same_seed_same_results_and_another_seed_differs(costs):
    config = ServeConfig()
    a = serve(requests_at(20, seed=3), costs, config, 20).summary()
    b = serve(requests_at(20, seed=3), costs, config, 20).summary()
    c = serve(requests_at(20, seed=4), costs, config, 20).summary()
    assert a == b
    assert a["ttft_s"] != c["ttft_s"]


def test_every_request_completes_with_consistent_latencies(costs):
    result = serve(requests_at(10), costs, ServeConfig(), 10)
    assert len(result.requests) == 200
    for r in result.requests:
        assert 0 < r.ttft_s <= r.e2e_s
        assert r.e2e_s == pytest.approx(r.ttft_s + r.tpot_s * (r.output - 1))
    assert result.output_tokens == 200 * 32


def test_continuous_batching_beats_static_at_equal_load(costs):
    # Well past saturation both schedulers are always busy; static batching wastes slots on
    # finished requests until the batch's longest one ends and prefills with no decodes.
    reqs = synthetic_requests(300, 200.0, prompt=256, output=64, seed=0)
    mixed = [Request(r.rid, r.arrival_s, r.prompt, 16 if r.rid % 2 else 96) for r in reqs]
    cont = serve(mixed, costs, ServeConfig(scheduler="continuous", max_batch=64), 200)
    static = serve(mixed, costs, ServeConfig(scheduler="static", max_batch=64), 200)
    assert cont.throughput_tokens_per_s > 1.2 * static.throughput_tokens_per_s
    assert cont.summary()["tpot_s"]["p50"] > 0 and static.preemptions == 0


def test_ttft_is_flat_below_saturation_and_grows_without_bound_past_it(costs):
    def ttft_by_position(rate, n):
        result = serve(requests_at(rate, n=n), costs, ServeConfig(max_batch=32), rate)
        ttft = np.array([r.ttft_s for r in sorted(result.requests, key=lambda r: r.arrival_s)])
        tenth = max(n // 10, 1)
        return ttft[:tenth].mean(), ttft[-tenth:].mean()

    early, late = ttft_by_position(5.0, 200)  # far below capacity
    assert late < 1.5 * early
    early, late = ttft_by_position(500.0, 200)  # far above: the queue only grows
    assert late > 20 * early
    _, late_longer = ttft_by_position(500.0, 400)  # twice the requests, twice the queue
    assert late_longer > 1.7 * late


def test_kv_capacity_caps_concurrency_and_forces_preemption(costs):
    # prompt 64 + output 64 tokens, 16-token blocks: admission takes ceil(65/16) = 5 blocks,
    # a finished request holds 8.  20 blocks admit at most 4, and they cannot all finish
    # without someone being preempted (4 x 8 = 32 > 20).
    reqs = synthetic_requests(40, 1000.0, prompt=64, output=64, seed=0)
    cont = serve(reqs, costs, ServeConfig(kv_blocks=20), 1000)
    assert cont.max_running == 4
    assert cont.preemptions > 0
    assert all(r.output == 64 for r in cont.requests)
    assert max(s.kv_blocks_used for s in cont.steps) <= 20
    # Static batching reserves prompt + output up front: 20 // 8 = 2 at a time, no preemption.
    static = serve(reqs, costs, ServeConfig(scheduler="static", kv_blocks=20), 1000)
    assert static.max_running == 2 and static.preemptions == 0


def test_capacity_from_the_chip_is_free_memory_over_kv_per_token(costs):
    # Llama-3.1-8B bf16 KV: 32 layers x 2 x 8 heads x 128 x 2 B = 128 KiB per token.
    assert costs.kv_bytes_per_token == 32 * 2 * 8 * 128 * 2
    hbm = 81559 * 2**20  # h100-sxm.yaml: nvidia-smi memory.total of an H100 80GB HBM3
    expected = (hbm - costs.weight_bytes) * 0.9 / (128 * 1024)
    assert costs.cache_capacity_bytes(0.9) / costs.kv_bytes_per_token == pytest.approx(expected)
    assert costs.block_bytes(16) == 16 * 128 * 1024 and costs.state_blocks(16) == 0


def test_recurrent_model_capacity_counts_sequences_of_state_not_tokens():
    # The MatMul-free LM has no KV cache: each user pins its fp32 recurrent state, whatever its length.
    chip = cost_model("mmfreelm-370m", HW)
    assert chip.kv_bytes_per_token == 0 and chip.state_bytes_per_seq == 24 * 1024 * 4
    assert chip.block_bytes(16) == chip.state_bytes_per_seq and chip.state_blocks(16) == 1
    result = serve(requests_at(50, n=12, prompt=64, output=8), chip, ServeConfig(kv_blocks=3), 50)
    assert result.max_running == 3  # three users' states fit, so three run at once


def test_a_request_larger_than_the_cache_is_one_clear_error(costs):
    with pytest.raises(AccelsimError, match="KV blocks"):
        serve(requests_at(1, n=2, prompt=64, output=64), costs, ServeConfig(kv_blocks=4), 1)


def test_pipelined_users_on_the_hardwired_chip():
    chip = cost_model(MODEL, "hardwired-llama-3.1-8b")
    result = serve(requests_at(50, n=30, prompt=128, output=16), chip, ServeConfig(scheduler="pipelined"), 50)
    capacity_tokens = chip.cache_capacity_bytes(0.9) / chip.kv_bytes_per_token
    assert result.max_running * (128 + 16) <= capacity_tokens + 16 * result.max_running
    assert all(r.ttft_s > 0 for r in result.requests)
    with pytest.raises(AccelsimError, match="hardwired"):
        serve(requests_at(1, n=2), cost_model(MODEL, HW), ServeConfig(scheduler="pipelined"), 1)


def test_trace_file_round_trip_and_errors(tmp_path):
    good = tmp_path / "t.csv"
    good.write_text("arrival_s,prompt_tokens,output_tokens\n0.5,100,10\n0.1,50,5\n")
    reqs = load_trace(good)
    assert [(r.arrival_s, r.prompt, r.output) for r in reqs] == [(0.1, 50, 5), (0.5, 100, 10)]
    bad = tmp_path / "bad.csv"
    bad.write_text("arrival_s,prompt_tokens,output_tokens\n0.5,abc,10\n")
    with pytest.raises(AccelsimError, match="bad.csv:2"):
        load_trace(bad)
    with pytest.raises(AccelsimError, match="columns"):
        (tmp_path / "cols.csv").write_text("t,p\n1,2\n")
        load_trace(tmp_path / "cols.csv")


def test_serve_cli_writes_report_curve_and_valid_trace(tmp_path, capsys):
    out = tmp_path / "serve"
    code = main(["serve", "--requests", "60", "--rate", "4", "--rates", "2,8", "--prompt", "128",
                 "--output", "16", "--out", str(out), "--json"])
    assert code == 0
    payload = json.loads(capsys.readouterr().out)
    assert [c["rate"] for c in payload["curve"]] == [2.0, 8.0]
    assert payload["summary"]["requests"] == 60
    for name in ("report.md", "report.html", "curve.csv", "latency_throughput.png", "queue.png"):
        assert (out / name).stat().st_size > 0
    assert "latency_throughput.png" in (out / "report.md").read_text()
    trace = json.loads((out / "trace.json").read_text())
    steps = [e for e in trace["traceEvents"] if e["ph"] == "X"]
    assert steps and all(e["dur"] > 0 and e["ts"] >= 0 for e in steps)
    assert {e["name"] for e in trace["traceEvents"] if e["ph"] == "C"} == {"waiting", "running", "kv blocks used"}


@pytest.mark.parametrize("args, message", [
    (["--rates", "1,x"], "--rates"),
    (["--rate", "0"], "--rate"),
    (["--max-batch", "0"], "--max-batch"),
    (["--scheduler", "pipelined"], "hardwired"),
    (["--trace", "/no/such/file.csv"], "cannot read trace"),
])
def test_bad_options_exit_2_with_one_line(args, message, capsys, tmp_path):
    code = main(["serve", "--requests", "5", "--out", str(tmp_path / "r"), *args])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert message in err and len(err.splitlines()) == 1


def test_choice_errors_exit_2_naming_the_allowed_values(capsys, tmp_path):
    # click's own usage errors come through the shared CLI entry point as one line too.
    code = main(["serve", "--arrival", "uniform", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1
    assert "Invalid value for '--arrival': 'uniform' is not one of 'poisson', 'gamma'." in err
