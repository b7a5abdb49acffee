"""Serving as benchmarks measure it: closed loop, offline, length spread, KV reservation and
preemption policies, the SLO capacity search."""
from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest
import yaml

from accelsim.api import cost_model
from accelsim.cli import main
from accelsim.errors import AccelsimError
from accelsim.sim import load as loads
from accelsim.sim.serving import ServeConfig, queued_requests, serve, synthetic_requests

MODEL, HW = "llama-3.2-1b", "h100-sxm"


@pytest.fixture(scope="module")
def costs():
    return cost_model(MODEL, HW)


def in_flight(result, t):
    return sum(1 for r in result.requests if r.arrival_s <= t < r.arrival_s + r.e2e_s)


@pytest.mark.parametrize("scheduler", ["continuous", "static"])
def test_closed_loop_keeps_exactly_n_in_flight_and_times_ttft_from_each_send(costs, scheduler):
    n = 6
    reqs = queued_requests(40, prompt=200, output=24, spread=0.5, seed=3)
    result = serve(reqs, costs, ServeConfig(scheduler=scheduler, max_batch=4), concurrency=n)
    sends = sorted(r.arrival_s for r in result.requests)
    assert sends[:n] == [0.0] * n and sends[n] > 0
    last_send = sends[-1]
    for t in np.linspace(0, last_send, 400, endpoint=False):
        assert in_flight(result, t) == n
    # TTFT counts from the send, so no request waits for one sent before the loop had room.
    assert all(0 < r.ttft_s <= r.e2e_s for r in result.requests)
    assert result.summary()["load"] == {"kind": "concurrency", "value": n}


def test_closed_loop_is_deterministic_and_more_users_buy_throughput_with_latency(costs):
    reqs = queued_requests(60, prompt=256, output=32)
    one = serve(reqs, costs, ServeConfig(), concurrency=1)
    again = serve(reqs, costs, ServeConfig(), concurrency=1)
    many = serve(reqs, costs, ServeConfig(), concurrency=16)
    assert one.summary() == again.summary()
    assert many.throughput_tokens_per_s > 4 * one.throughput_tokens_per_s
    assert many.tokens_per_s_per_user < one.tokens_per_s_per_user
    assert one.max_running == 1


def test_length_spread_draws_uniform_80_to_100_percent_and_leaves_arrivals_alone():
    spread = synthetic_requests(4000, 10.0, prompt=1000, output=200, seed=5, spread=0.8)
    fixed = synthetic_requests(4000, 10.0, prompt=1000, output=200, seed=5)
    assert [r.arrival_s for r in spread] == [r.arrival_s for r in fixed]
    prompts = np.array([r.prompt for r in spread])
    outputs = np.array([r.output for r in spread])
    assert prompts.min() == 800 and prompts.max() == 1000 and outputs.min() == 160 and outputs.max() == 200
    assert prompts.mean() == pytest.approx(900, rel=0.01) and outputs.mean() == pytest.approx(180, rel=0.01)
    with pytest.raises(AccelsimError, match="--length-spread"):
        queued_requests(3, spread=0.0)


def test_offline_with_no_evict_never_preempts_where_prompt_only_reservation_thrashes(costs):
    # 64 + 64 tokens in 16-token blocks: 8 blocks to finish; 40 blocks hold 5 finished requests.
    reqs = queued_requests(30, prompt=64, output=64)
    assert all(r.arrival_s == 0 for r in reqs)
    greedy = serve(reqs, costs, ServeConfig(kv_blocks=40))
    no_evict = serve(reqs, costs, ServeConfig(kv_blocks=40, reserve_output=1.0))
    assert greedy.preemptions > 0 and greedy.offline
    assert no_evict.preemptions == 0 and no_evict.max_running == 5
    for result in (greedy, no_evict):
        assert sorted(r.rid for r in result.requests) == list(range(30))
        assert all(r.e2e_s == pytest.approx(r.ttft_s + r.tpot_s * (r.output - 1)) for r in result.requests)
    # A partial reservation (SGLang's new-token ratio) admits between the two and preempts less.
    partial = serve(reqs, costs, ServeConfig(kv_blocks=40, reserve_output=0.5))
    assert partial.preemptions < greedy.preemptions


def test_recompute_prefills_again_and_swap_copies_instead(costs):
    reqs = queued_requests(30, prompt=64, output=64)
    recompute = serve(reqs, costs, ServeConfig(kv_blocks=40))
    swap = serve(reqs, costs, ServeConfig(kv_blocks=40, preemption="swap"))
    prompts = sum(r.prompt for r in reqs)
    assert swap.preemptions > 0
    assert sum(s.prefill_tokens for s in swap.steps) == prompts  # nothing computed twice
    assert sum(s.prefill_tokens for s in recompute.steps) > prompts
    # Every request still produces exactly its output tokens.
    assert all(r.output == 64 for r in swap.requests + recompute.requests)
    # A swap of C tokens each way at the host link: 64 GB/s moves Llama-3.2-1B's 32 KiB/token fast,
    # but not for free.
    assert costs.swap_time_s(128, 64e9) == pytest.approx(128 * costs.kv_bytes_per_token / 64e9)


def test_memory_fraction_of_all_memory_leaves_less_than_of_free_memory(costs):
    total = costs.backend.kv_capacity(costs.hw, 0.0, costs.chips)
    assert costs.cache_capacity_bytes(0.9, "total") == pytest.approx(0.9 * total - costs.weight_bytes)
    assert costs.cache_capacity_bytes(0.9, "total") < costs.cache_capacity_bytes(0.9, "free")
    with pytest.raises(AccelsimError, match="KV memory fraction"):
        cost_model("llama-3.1-70b", HW, weight_dtype="fp8").cache_capacity_bytes(0.5, "total")


@pytest.mark.parametrize("kind, start", [("rate", 20.0), ("concurrency", 4)])
def test_capacity_search_returns_a_load_that_meets_the_slo_and_5_percent_more_does_not(costs, kind, start):
    config = ServeConfig(chunk=2048)
    load = loads.Load(kind, start, requests=80, prompt=512, output=48, seed=1)
    slo = loads.Slo(ttft_s=0.08, tpot_s=0.012, percentile=90)
    cap = loads.find_capacity(costs, config, load, slo)
    best = loads.run(costs, config, load.at(cap.value))
    above_value = math.ceil(cap.value * 1.05) if kind == "concurrency" else cap.value * 1.05
    above = loads.run(costs, config, load.at(above_value))
    assert slo.met(best)
    assert not slo.met(above)
    ttft, tpot = slo.measured(best)
    assert ttft == pytest.approx(np.percentile([r.ttft_s for r in best.requests], 90))
    assert cap.summary()["percentile"] == "p90" and cap.summary()["value"] == cap.value


def test_capacity_search_says_when_nothing_or_everything_meets_the_slo(costs):
    load = loads.Load("concurrency", 2, requests=10, prompt=256, output=16)
    with pytest.raises(AccelsimError, match="no load meets the SLO"):
        loads.find_capacity(costs, ServeConfig(), load, loads.Slo(ttft_s=1e-6, tpot_s=1e-6))
    with pytest.raises(AccelsimError, match="all 10 requests in flight"):
        loads.find_capacity(costs, ServeConfig(), load, loads.Slo(ttft_s=100, tpot_s=100))


def test_serve_cli_concurrency_json_and_frontier(tmp_path, capsys):
    out = tmp_path / "c"
    code = main(["serve", "--model", MODEL, "--requests", "40", "--concurrency", "4", "--prompt", "128",
                 "--output", "16", "--length-spread", "0.8", "--out", str(out), "--json"])
    assert code == 0
    payload = json.loads(capsys.readouterr().out)
    summary = payload["summary"]
    assert summary["load"] == {"kind": "concurrency", "value": 4} and summary["rate"] is None
    assert [c["load"]["value"] for c in payload["curve"]] == [1, 2, 4, 8]
    for key in ("ttft_s", "tpot_s"):
        assert set(summary[key]) == {"p50", "p90", "p99", "mean"}
    assert summary["throughput_tokens_per_s"] > 0 and summary["preemptions"] == 0
    assert (out / "frontier.png").stat().st_size > 0


def test_serve_cli_offline_runs_one_point(tmp_path, capsys):
    code = main(["serve", "--model", MODEL, "--requests", "30", "--offline", "--prompt", "128",
                 "--output", "16", "--kv-reserve", "1", "--out", str(tmp_path / "o"), "--json"])
    assert code == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["summary"]["load"]["kind"] == "offline" and len(payload["curve"]) == 1
    assert payload["summary"]["preemptions"] == 0


@pytest.mark.parametrize("args, message", [
    (["--concurrency", "4", "--offline"], "--concurrency and --offline"),
    (["--concurrency", "0"], "--concurrency"),
    (["--concurrency", "4", "--rates", "1,2"], "--rates"),
    (["--length-spread", "1.5"], "--length-spread"),
    (["--kv-reserve", "2"], "--kv-reserve"),
    (["--kv-memory-fraction", "0"], "--kv-memory-fraction"),
    (["--offline", "--find-capacity"], "--find-capacity"),
    (["--find-capacity", "--slo-percentile", "0"], "--slo-percentile"),
])
def test_bad_load_options_exit_2_with_one_line(args, message, capsys, tmp_path):
    code = main(["serve", "--model", MODEL, "--requests", "5", "--out", str(tmp_path / "r"), *args])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert message in err and len(err.splitlines()) == 1


# --- runtime presets ------------------------------------------------------------------------

PRESETS = ("accelsim", "vllm", "sglang", "tensorrt-llm", "nim")


@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_value_carries_a_source(name):
    from accelsim.api import load_runtime
    preset = load_runtime(name)
    assert preset.name == name and len(preset.engine) > 3
    settings = preset.settings()
    assert {"scheduler", "kv_reserve", "preemption", "max_tokens_per_step", "max_batch", "block_size",
            "kv_memory", "request_overhead", "step_overhead"} <= set(settings)
    for key, setting in settings.items():
        assert len(setting.source.strip()) > 20, f"{name}.{key} needs a source"
    preset.serve_config()  # every preset makes a valid scheduler configuration


def test_accelsim_preset_is_the_old_default_and_engines_differ_where_documented():
    from accelsim.api import load_runtime
    assert load_runtime(None).serve_config() == ServeConfig()
    assert load_runtime("tensorrt-llm").serve_config().reserve_output == 1.0  # GUARANTEED_NO_EVICT
    vllm = load_runtime("vllm").serve_config()
    assert (vllm.chunk, vllm.max_batch, vllm.memory_basis, vllm.reserve_output) == (8192, 1024, "total", 0.0)
    nim, trt = load_runtime("nim").serve_config(), load_runtime("tensorrt-llm").serve_config()
    # NIM serves a built TensorRT-LLM engine (C++ runtime): no eager Python prefill steps, the
    # one difference from the PyTorch backend's defaults.
    assert replace(nim, eager_prefill_kernel_s=trt.eager_prefill_kernel_s) == trt
    assert nim.eager_prefill_kernel_s == 0.0 < trt.eager_prefill_kernel_s


def test_explicit_options_override_the_preset(tmp_path, capsys):
    code = main(["serve", "--model", MODEL, "--runtime", "vllm", "--chunk", "256", "--kv-reserve", "1",
                 "--offline", "--requests", "10", "--prompt", "64", "--output", "8",
                 "--out", str(tmp_path / "o")])
    assert code == 0
    text = capsys.readouterr().out
    assert "under the vllm runtime" in text and "chunk 256" in text and "KV reserve 1 of the output" in text
    assert "max batch 1024" in text  # the rest stays the preset's


def test_a_bad_preset_is_one_line_naming_file_and_key(tmp_path, capsys):
    bad = tmp_path / "rt.yaml"
    bad.write_text("name: x\nengine: some engine\nscheduler: {value: continuous}\n")
    code = main(["serve", "--model", MODEL, "--runtime", str(bad), "--requests", "5",
                 "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "rt.yaml" in err and len(err.splitlines()) == 1
    code = main(["serve", "--model", MODEL, "--runtime", "vlm", "--requests", "5", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "did you mean 'vllm'" in err


def test_a_runtime_host_overhead_replaces_the_hardware_configs(tmp_path):
    from accelsim.api import hardware_under, load_runtime
    preset = load_runtime("vllm")
    moved = preset.model_copy(update={"request_overhead": preset.request_overhead.model_copy(update={"value": 0.004})})
    assert hardware_under(HW, moved).gpu.request_overhead == 0.004
    assert hardware_under(HW, preset).gpu.request_overhead == hardware_under(HW, None).gpu.request_overhead
    with pytest.raises(AccelsimError, match="per-request host overhead"):
        hardware_under("tpu-v5e", moved)


def test_python_serve_returns_summary_curve_and_capacity():
    import accelsim
    report = accelsim.serve(MODEL, HW, runtime="tensorrt-llm", concurrency=2, requests=40, prompt=256,
                            output=16, find_capacity=True, slo_ttft=0.012, slo_tpot=0.01)
    assert report.runtime == "tensorrt-llm"
    assert report.summary["load"] == {"kind": "concurrency", "value": 2}
    assert [c["load"]["value"] for c in report.curve] == [1, 2, 4]
    assert report.capacity["load"] == "concurrency" and report.capacity["value"] >= 1
    assert report.capacity["at_capacity"]["ttft_s"] <= 0.05


def test_validation_points_may_name_a_bundled_preset_and_get_its_overheads(tmp_path):
    import shutil

    from accelsim.sim.runtime import RuntimePreset
    from accelsim.validate.points import DEFAULT_POINTS, Catalogue
    from accelsim.validate.predict import under_runtime
    text = DEFAULT_POINTS.read_text().replace("runtime: tensorrt-llm-v0.9", "runtime: tensorrt-llm", 1)
    for name in ("measured_inference.csv", "kernels.csv", "measured_tpu.csv", "measured_trtllm_blogs.csv",
                 "measured_trtllm_v0.9.csv"):
        shutil.copy(DEFAULT_POINTS.parent / name, tmp_path / name)
    (tmp_path / "points.yaml").write_text(text)
    catalogue = Catalogue(tmp_path / "points.yaml")
    point = next(p for p in catalogue.points if p.runtime == "tensorrt-llm")
    preset = catalogue.runtime(point)
    assert isinstance(preset, RuntimePreset) and preset.name == "tensorrt-llm"
    from accelsim.api import resolve_hardware
    hw = resolve_hardware(point.hw)
    assert under_runtime(hw, preset).gpu.request_overhead == hw.gpu.request_overhead  # null keeps the config's
    with pytest.raises(AccelsimError, match="neither one of the file's runtimes nor a bundled preset"):
        (tmp_path / "bad.yaml").write_text(text.replace("runtime: tensorrt-llm\n", "runtime: tensorrt\n", 1))
        Catalogue(tmp_path / "bad.yaml")


def test_serving_validation_file_maps_every_row_with_the_split_by_model():
    from accelsim.validate import serving
    points = [p for p in serving.load_points() if p.source == "trtllm-1.0-throughput"]
    assert len(points) == 100
    assert {p.split for p in points if p.run.model == "llama-3.1-8b"} == {"calibration"}
    assert {p.split for p in points if p.run.model != "llama-3.1-8b"} == {"holdout"}
    assert all(p.run.runtime == "tensorrt-llm" and p.run.load == "offline" and p.measured > 0 for p in points)
    h200_70b = next(p for p in points if p.id.endswith("H200 SXM 141GB/Llama-3.3-70B/2048-2048"))
    assert (h200_70b.run.tp, h200_70b.run.requests, h200_70b.measured) == (1, 1500, 2003.0)
    # the Blackwell FP4 columns: NVFP4 GEMMs with an FP8 KV cache, all in the holdout (not 8B)
    b200_405b = next(p for p in points if p.id.endswith("B200 180GB/Llama-3.1-405B/20000-2000"))
    assert (b200_405b.run.hw, b200_405b.run.tp, b200_405b.measured) == ("b200", 4, 672.0)
    assert (b200_405b.run.weight_dtype, b200_405b.run.act_dtype, b200_405b.run.kv_dtype) == ("nvfp4", "nvfp4", "fp8")
    assert {p.split for p in points if p.run.hw in ("b200", "gb200")} == {"holdout"}


def test_inferencex_rows_map_to_closed_loop_runs_as_the_benchmark_client_sends_them():
    from accelsim.validate import serving
    points = [p for p in serving.load_points() if p.source == "inferencex"]
    # B200 TensorRT-LLM fp4 (28) and fp8 (8), MI355X SGLang fp4 (44); vLLM's DeepSeek-V4-Pro and the
    # H100 row without a stated layout are excluded with a reason, power/energy rows are unscored.
    assert len(points) == 80
    assert {p.split for p in points if p.metric == "ttft_p50"} == {"holdout"}
    assert {p.split for p in points if p.metric != "ttft_p50"} == {"calibration"}
    runs = {p.run for p in points}
    assert len(runs) == 22  # one simulation answers every metric of its measured run
    assert all(r.requests == 10 * r.concurrency and r.spread == 0.8 and r.load == "concurrency" for r in runs)
    b200 = {(r.weight_dtype, r.tp, r.ep) for r in runs if r.hw == "b200"}
    assert b200 == {("nvfp4", 8, 8), ("fp8", 8, 8)}
    assert {r.act_dtype for r in runs if r.weight_dtype in ("nvfp4", "mxfp4")} == {"nvfp4", "mxfp4"}
    assert {(r.weight_dtype, r.runtime, r.tp) for r in runs if r.hw == "mi355x"} == {("mxfp4", "sglang", 4)}


@pytest.mark.parametrize("text, chips, layout", [
    ("TP8 EP8 (single node, 8 GPUs)", 8, (8, 8, 1)),
    ("TP4 EP1 (single node, 4 GPUs)", 4, (4, 1, 1)),
    ("TP8 EP8 DP-attention (single node)", 8, (1, 8, 8)),
    ("TP2", 2, (2, 1, 1)),
])
def test_inferencex_parallelism_cells_parse_to_tp_ep_dp(text, chips, layout):
    from accelsim.validate.serving import parse_layout
    assert parse_layout(text, chips, "row") == layout


@pytest.mark.parametrize("text, chips, message", [
    ("TP8 EP8", 4, "does not account for the row's 4 chips"),
    ("same as above", 64, "names no TPn"),
])
def test_inferencex_parallelism_cells_that_do_not_fit_are_refused(text, chips, message):
    from accelsim.validate.serving import parse_layout
    with pytest.raises(AccelsimError, match=message):
        parse_layout(text, chips, "row")


_IX_HEADER = ("hardware,chips,parallelism,model,precision,framework,batch_or_concurrency,input_len,output_len,"
              "scenario,metric,value,unit,status,source,notes")


def _inferencex_file(tmp_path, rows: list[str], framework_map: str = "{SGLang: sglang}"):
    (tmp_path / "ix.csv").write_text("\n".join([_IX_HEADER, *rows]) + "\n")
    (tmp_path / "serving.yaml").write_text(f"""
sources:
  ix:
    format: inferencex
    file: ix.csv
    scenario: fixed-concurrency
    runtimes: {framework_map}
    metrics: {{median TTFT: ttft_p50, median interactivity (1/TPOT): interactivity_p50,
              output throughput per GPU: output_throughput_per_chip,
              total throughput per GPU (input+output): total_throughput_per_chip}}
    precisions: {{bf16: {{"*": {{weight: bf16, act: bf16, kv: bf16}}}}}}
    requests_per_concurrency: 4
    length_spread: 0.8
    calibration_metrics: [interactivity_p50]
    source: a test
models: {{Llama-3.2-1B: {MODEL}}}
hardware: {{H100: {HW}}}
""")
    return tmp_path / "serving.yaml"


def _ix_row(metric: str, value: float, framework: str = "SGLang") -> str:
    return f"H100,2,TP2 EP1,Llama-3.2-1B,bf16,{framework},concurrency 2,256,32,fixed-concurrency,{metric},{value},x,m,s,"


def test_inferencex_run_predicts_every_metric_of_one_measured_run(tmp_path):
    from accelsim.validate import serving
    path = _inferencex_file(tmp_path, [_ix_row("median TTFT", 0.05), _ix_row("median interactivity (1/TPOT)", 200),
                                       _ix_row("output throughput per GPU", 300),
                                       _ix_row("total throughput per GPU (input+output)", 2000)])
    points = serving.load_points(path)
    assert len({p.run for p in points}) == 1 and points[0].run.requests == 8
    frame = serving.evaluate(points).set_index("metric")
    result = serving.simulate(points[0].run)
    prompt, output = (sum(getattr(r, k) for r in result.requests) for k in ("prompt", "output"))
    # total and output throughput share the run's makespan and chips: they differ by (in + out) / out
    assert frame.loc["total_throughput_per_chip", "predicted"] == pytest.approx(
        frame.loc["output_throughput_per_chip", "predicted"] * (prompt + output) / output)
    assert frame.loc["ttft_p50", "predicted"] == pytest.approx(result.percentiles("ttft_s")["p50"])
    assert frame.loc["interactivity_p50", "split"] == "calibration" and frame.loc["ttft_p50", "split"] == "holdout"
    assert all(0.8 * 256 <= r.prompt <= 256 and 0.8 * 32 <= r.output <= 32 for r in result.requests)


def test_inferencex_row_of_an_unmapped_framework_is_refused_with_its_line(tmp_path):
    from accelsim.validate import serving
    path = _inferencex_file(tmp_path, [_ix_row("median TTFT", 0.05), _ix_row("median TTFT", 0.05, "vLLM")])
    with pytest.raises(AccelsimError, match=r"ix.csv:3.*no runtimes mapping for 'vLLM'"):
        serving.load_points(path)


def test_validate_serving_cli_reports_errors_per_source_metric_and_split(tmp_path, capsys):
    from accelsim.validate.serving import DEFAULT_FILE
    rows = (DEFAULT_FILE.parent / "measured_trtllm_v1.0.csv").read_text().splitlines()
    header = rows[0]
    picked = [r for r in rows[1:] if "Llama-3.1-8B" in r and "H100" in r and ",128,128," in r]
    assert len(picked) == 1
    small = picked[0].replace(",30000,128,128,", ",200,128,128,")  # fewer requests: a fast check
    (tmp_path / "measured_trtllm_v1.0.csv").write_text("\n".join([header, small]) + "\n")
    document = yaml.safe_load(DEFAULT_FILE.read_text())
    document["sources"] = {"trtllm-1.0-throughput": document["sources"]["trtllm-1.0-throughput"]}
    (tmp_path / "serving.yaml").write_text(yaml.safe_dump(document))
    code = main(["validate", "--serving", "--points", str(tmp_path / "serving.yaml"), "--json", "--max-error", "5",
                 "--out", str(tmp_path / "out")])
    payload = json.loads(capsys.readouterr().out)
    assert code == 0
    (point,) = payload["points"]
    assert point["split"] == "calibration" and point["measured"] == 28312.0
    assert point["error"] == pytest.approx(point["predicted"] / 28312.0 - 1)
    (group,) = payload["summary"]
    assert group["source"] == "trtllm-1.0-throughput" and group["metric"] == "output_throughput"
    assert (tmp_path / "out" / "serving_summary.csv").exists()


def test_serve_cli_find_capacity_reports_it_in_json_and_the_report(tmp_path, capsys):
    out = tmp_path / "cap"
    code = main(["serve", "--model", MODEL, "--requests", "40", "--concurrency", "2", "--prompt", "256",
                 "--output", "16", "--find-capacity", "--slo-ttft", "0.012", "--slo-tpot", "0.01",
                 "--slo-percentile", "90", "--out", str(out), "--json"])
    assert code == 0
    capacity = json.loads(capsys.readouterr().out)["capacity"]
    assert capacity["load"] == "concurrency" and capacity["percentile"] == "p90"
    assert capacity["at_capacity"]["ttft_s"] <= 0.012 and capacity["at_capacity"]["tpot_s"] <= 0.01
    assert capacity["above"]["ttft_s"] > 0.012 or capacity["above"]["tpot_s"] > 0.01
    assert "SLO capacity (p90" in (out / "report.md").read_text()


def test_a_trace_plays_at_its_own_rate_unless_a_rate_is_given_on_cli_and_api(tmp_path, capsys):
    """One rule (``load.offered_value``) for the CLI and ``accelsim.serve``: a trace of 5 requests
    over 2 s plays at 2 requests/s; an explicit rate stretches it to that rate."""
    import accelsim
    trace = tmp_path / "t.csv"
    trace.write_text("arrival_s,prompt_tokens,output_tokens\n" + "".join(f"{0.5 * i},64,4\n" for i in range(5)))
    rates = {}
    for name, extra in (("own", ()), ("asked", ("--rate", "4"))):
        code = main(["serve", "--model", MODEL, "--trace", str(trace), *extra, "--rates", "1", "--json",
                     "--out", str(tmp_path / name)])
        assert code == 0
        rates[name] = json.loads(capsys.readouterr().out)["summary"]["rate"]
    assert rates == {"own": pytest.approx(2.0), "asked": pytest.approx(4.0)}
    assert accelsim.serve(MODEL, HW, trace=str(trace), curve=[1.0]).summary["rate"] == pytest.approx(2.0)
    assert accelsim.serve(MODEL, HW, trace=str(trace), rate=4.0, curve=[1.0]).summary["rate"] == pytest.approx(4.0)
