"""When a new request joins a busy engine (issue 15, InferenceX TTFT): the engine looks at its
queue once per step, an overlap scheduler one step ahead, and a separate prefill batch stalls
the decodes.  Hand-worked on step costs fixed by hand (prefill 10 ms, decode 1 ms), then the
presets and the CLI end to end."""
from __future__ import annotations

import json
import shutil

import pytest
import yaml

from accelsim.api import cost_model, load_runtime
from accelsim.cli import main
from accelsim.sim.serving import Request, ServeConfig, StepCost, queued_requests, serve

MODEL, HW = "llama-3.2-1b", "h100-sxm"
PREFILL_S, DECODE_S = 0.010, 0.001


@pytest.fixture()
def fixed_costs():
    """The model's real footprints (KV capacity), with every step's time fixed by hand."""
    costs = cost_model(MODEL, HW)
    costs.prefill = lambda tokens, sequences=1: StepCost(PREFILL_S, 0.0)  # type: ignore[method-assign]
    costs.decode = lambda batch, context: StepCost(DECODE_S, 0.0)  # type: ignore[method-assign]
    costs.request_overhead_s = 0.0
    return costs


# Concurrency 2: r0 and r1 start together; r0 (3 tokens) ends after the prefill step and two
# decode steps, at t = 12 ms, and its slot sends r2 at that instant while r1 (10 tokens) decodes.
REQUESTS = [Request(0, 0.0, 100, 3), Request(1, 0.0, 100, 10), Request(2, 0.0, 100, 3)]


def _run(costs, **config):
    result = serve(REQUESTS, costs, ServeConfig(chunk=512, **config), concurrency=2)
    return {r.rid: r for r in result.requests}, result


def test_a_busy_engine_sees_a_closed_loop_request_at_its_next_step(fixed_costs):
    by_id, _ = _run(fixed_costs)
    assert by_id[0].ttft_s == pytest.approx(PREFILL_S) and by_id[1].ttft_s == pytest.approx(PREFILL_S)
    assert by_id[2].arrival_s == pytest.approx(PREFILL_S + 2 * DECODE_S)
    # Sent as r0's last token is handed out, r2 misses the look at the queue made in that same
    # instant: r1's decode step runs first (1 ms), then r2's prefill rides with r1's decode (11 ms).
    assert by_id[2].ttft_s == pytest.approx(DECODE_S + PREFILL_S + DECODE_S)


def test_an_overlap_scheduler_adds_the_step_it_scheduled_ahead(fixed_costs):
    by_id, _ = _run(fixed_costs, overlap_schedule=True)
    # The step after r2's arrival was scheduled before it arrived, and so was the one after it:
    # two decode steps of r1, then the mixed step.
    assert by_id[2].ttft_s == pytest.approx(2 * DECODE_S + PREFILL_S + DECODE_S)
    # The first wave finds the engine idle: no wait.
    assert by_id[0].ttft_s == pytest.approx(PREFILL_S)


def test_a_separate_prefill_batch_runs_alone_and_the_decodes_wait(fixed_costs):
    by_id, result = _run(fixed_costs, mixed_prefill=False)
    assert by_id[2].ttft_s == pytest.approx(DECODE_S + PREFILL_S)  # the prefill step alone
    assert all(step.decodes == 0 for step in result.steps if step.prefill_tokens)
    mixed, _ = _run(fixed_costs)
    # r1 skips a decode in r2's prefill step and decodes in the next one: with these costs
    # (mixed step = prefill + decode) it ends at the same time either way.
    assert by_id[1].e2e_s == pytest.approx(mixed[1].e2e_s)
    assert max(s.end_s - s.start_s for s in result.steps) == pytest.approx(PREFILL_S)


def test_offline_and_open_loop_loads_are_not_delayed_by_the_rule(fixed_costs):
    """All-at-once requests are all seen by the idle engine at t=0, with or without overlap."""
    reqs = queued_requests(8, prompt=100, output=4)
    plain = serve(reqs, fixed_costs, ServeConfig(chunk=4096))
    overlap = serve(reqs, fixed_costs, ServeConfig(chunk=4096, overlap_schedule=True))
    assert [r.ttft_s for r in plain.requests] == [r.ttft_s for r in overlap.requests]
    assert all(r.ttft_s == pytest.approx(PREFILL_S) for r in plain.requests)


def test_ttft_grows_with_each_rule_and_never_undercuts_the_prefill_step(fixed_costs):
    reqs = queued_requests(40, prompt=300, output=30, spread=0.8, seed=2)
    runs = {name: serve(reqs, fixed_costs, ServeConfig(chunk=8192, **cfg), concurrency=4)
            for name, cfg in {"plain": {}, "overlap": {"overlap_schedule": True}}.items()}
    p50 = {name: r.percentiles("ttft_s")["p50"] for name, r in runs.items()}
    assert p50["overlap"] > p50["plain"] >= PREFILL_S
    for result in runs.values():
        assert all(r.ttft_s >= PREFILL_S - 1e-12 for r in result.requests)


def test_engine_presets_state_their_schedulers():
    sglang, trt, vllm = load_runtime("sglang"), load_runtime("tensorrt-llm"), load_runtime("vllm")
    assert sglang.serve_config().overlap_schedule and not sglang.serve_config().mixed_prefill
    assert trt.serve_config().overlap_schedule and trt.serve_config().mixed_prefill
    assert not vllm.serve_config().overlap_schedule and vllm.serve_config().mixed_prefill
    plain = load_runtime("accelsim").serve_config()
    assert not plain.overlap_schedule and plain.mixed_prefill


def test_serve_cli_runtime_overlap_raises_ttft_end_to_end(tmp_path, capsys):
    document = yaml.safe_load(open("runtimes/sglang.yaml"))
    document["name"] = "sglang-no-overlap"
    document["overlap_schedule"]["value"] = False
    plain = tmp_path / "plain.yaml"
    plain.write_text(yaml.safe_dump(document))
    args = ["serve", "--model", MODEL, "--hw", HW, "--concurrency", "8", "--requests", "48", "--prompt", "256",
            "--output", "32", "--length-spread", "0.8", "--json"]
    summaries = {}
    for name, runtime in (("overlap", "sglang"), ("plain", str(plain))):
        assert main([*args, "--runtime", runtime, "--out", str(tmp_path / name)]) == 0
        summaries[name] = json.loads(capsys.readouterr().out)["summary"]
    assert summaries["overlap"]["ttft_s"]["p50"] > summaries["plain"]["ttft_s"]["p50"] > 0
    bad = dict(document, overlap_schedule={"value": "sometimes", "source": "a made-up source here"})
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text(yaml.safe_dump(bad))
    assert main([*args, "--runtime", str(wrong), "--out", str(tmp_path / "wrong")]) == 2
    err = capsys.readouterr().err
    assert "overlap_schedule" in err and "Traceback" not in err


def test_validate_serving_source_picks_one_source_and_refuses_unknown_names(tmp_path, capsys):
    from accelsim.validate.serving import DEFAULT_FILE
    rows = (DEFAULT_FILE.parent / "measured_trtllm_v1.0.csv").read_text().splitlines()
    picked = [r for r in rows[1:] if "Llama-3.1-8B" in r and "H100" in r and ",128,128," in r]
    (tmp_path / "measured_trtllm_v1.0.csv").write_text(
        "\n".join([rows[0], picked[0].replace(",30000,128,128,", ",100,128,128,")]) + "\n")
    (tmp_path / "measured_2025.csv").write_text((DEFAULT_FILE.parent / "measured_2025.csv").read_text())
    (tmp_path / "serving.yaml").write_text(DEFAULT_FILE.read_text())
    shutil.copytree(DEFAULT_FILE.parent / "mlperf_lengths", tmp_path / "mlperf_lengths")  # the MLPerf source's tables
    base = ["validate", "--serving", "--points", str(tmp_path / "serving.yaml"), "--json", "--max-error", "5"]
    assert main([*base, "--source", "trtllm-1.0-throughput"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert {p["source"] for p in payload["points"]} == {"trtllm-1.0-throughput"} and len(payload["points"]) == 1
    assert main([*base, "--source", "inferencx"]) == 2
    err = capsys.readouterr().err
    assert "--source 'inferencx'" in err and "inferencex, mlperf-5.1-offline, mlperf-5.1-server, trtllm-1.0-throughput" in err
    assert main(["validate", "--source", "inferencex"]) == 2
    assert "needs --serving" in capsys.readouterr().err
