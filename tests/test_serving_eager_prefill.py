"""A step that carries a prefill runs eagerly in SGLang and TensorRT-LLM unless prefill CUDA graphs
are turned on (issue 15, InferenceX TTFT): its host issues every kernel, so the step lasts at least
kernels x host time per kernel.  Hand-worked on step costs fixed by hand, then the presets, the
validation file's per-run switch and the CLI's error lines."""
from __future__ import annotations

import pytest
import yaml

from accelsim.api import cost_model, load_runtime
from accelsim.cli import main
from accelsim.errors import AccelsimError
from accelsim.sim.serving import Request, ServeConfig, StepCost, eager_step_s, serve

MODEL, HW = "llama-3.2-1b", "h100-sxm"
PREFILL_S, DECODE_S, KERNELS = 0.010, 0.001, 200


@pytest.fixture()
def fixed_costs():
    """Real footprints, step times fixed by hand; a prefill forward launches 200 kernels."""
    costs = cost_model(MODEL, HW)
    costs.prefill = lambda tokens, sequences=1: StepCost(PREFILL_S, 0.0, KERNELS)  # type: ignore[method-assign]
    costs.decode = lambda batch, context: StepCost(DECODE_S, 0.0, KERNELS)  # type: ignore[method-assign]
    costs.request_overhead_s = 0.0
    return costs


# Closed loop of 2 (as tests/test_serving_admission.py): r0 (3 tokens) and r1 (10 tokens) start
# together; r0's end sends r2 while r1 decodes.
REQUESTS = [Request(0, 0.0, 100, 3), Request(1, 0.0, 100, 10), Request(2, 0.0, 100, 3)]


def _run(costs, per_kernel_s):
    result = serve(REQUESTS, costs, ServeConfig(chunk=512, eager_prefill_kernel_s=per_kernel_s), concurrency=2)
    return {r.rid: r for r in result.requests}, result


def test_an_eager_prefill_step_lasts_as_long_as_its_host_launches(fixed_costs):
    by_id, result = _run(fixed_costs, 1e-4)  # 200 kernels x 0.1 ms = 20 ms of launches
    host = KERNELS * 1e-4
    # The first step prefills r0 and r1 in one forward: 10 ms on the chip, 20 ms on the host.
    assert by_id[0].ttft_s == pytest.approx(host) and by_id[1].ttft_s == pytest.approx(host)
    # r0 ends after two graph-replayed decode steps (1 ms each), at 22 ms, and sends r2; r1
    # decodes once more (1 ms), then r2's prefill rides with r1's decode: 11 ms of chip work
    # under 20 ms of launches.  TTFT = 1 + 20 ms (11 + 1 ms with prefill graphs).
    assert by_id[2].arrival_s == pytest.approx(host + 2 * DECODE_S)
    assert by_id[2].ttft_s == pytest.approx(DECODE_S + host)
    assert all(s.end_s - s.start_s == pytest.approx(DECODE_S) for s in result.steps if not s.prefill_tokens)
    assert all(s.end_s - s.start_s == pytest.approx(host) for s in result.steps if s.prefill_tokens)


def test_launches_the_chip_outruns_change_nothing(fixed_costs):
    fast, fast_result = _run(fixed_costs, 1e-6)  # 0.2 ms of launches under 10 ms of chip work
    graphs, graphs_result = _run(fixed_costs, 0.0)
    assert [r.ttft_s for r in fast.values()] == [r.ttft_s for r in graphs.values()]
    assert graphs[2].ttft_s == pytest.approx(DECODE_S + PREFILL_S + DECODE_S)
    assert fast_result.energy_j == pytest.approx(graphs_result.energy_j)


def test_the_wait_for_launches_draws_static_power(fixed_costs):
    _, eager = _run(fixed_costs, 1e-4)
    _, graphs = _run(fixed_costs, 0.0)
    waited = sum(s.end_s - s.start_s for s in eager.steps) - sum(s.end_s - s.start_s for s in graphs.steps)
    assert waited == pytest.approx(2 * (KERNELS * 1e-4 - PREFILL_S) - DECODE_S)
    assert eager.energy_j - graphs.energy_j == pytest.approx(fixed_costs.static_w * waited, rel=1e-6)


def test_eager_step_is_the_later_of_chip_and_host():
    assert eager_step_s(0.010, 100, 1e-5) == pytest.approx(0.010)
    assert eager_step_s(0.010, 1000, 1e-5) == pytest.approx(0.010)
    assert eager_step_s(0.010, 1001, 1e-5) == pytest.approx(0.01001)
    assert eager_step_s(0.0, 0, 1e-3) == 0.0


def test_a_real_prefill_step_counts_its_kernels():
    costs = cost_model(MODEL, HW)
    step = costs.prefill(512)
    assert step.kernels > 0
    result = serve(REQUESTS, costs, ServeConfig(chunk=512, eager_prefill_kernel_s=1e-3), concurrency=2)
    prefills = [s for s in result.steps if s.prefill_tokens]
    assert prefills and all(s.end_s - s.start_s >= step.kernels * 1e-3 - 1e-12 for s in prefills)


# SGLang PR 12160: an eager DeepSeek-V3 forward of one new token, host-bound, took 82.6 ms.
EAGER_FORWARD_S = 82.6e-3


def test_engine_presets_state_whether_prefill_steps_are_eager():
    """The per-kernel host time is the source's eager forward over the kernels accelsim lowers
    that step into (DeepSeek-V3, TP8, one prompt token): when the graph changes, so must it."""
    from accelsim import Workload, simulate
    from accelsim.transform.layout import Parallelism
    step = simulate("deepseek-v3", "h200", Workload(phase="prefill", batch=1, prompt=1),
                    weight_dtype="fp8", parallelism=Parallelism(tp=8))
    per_kernel = EAGER_FORWARD_S / len(step.ops)
    for name in ("tensorrt-llm", "sglang"):
        assert load_runtime(name).serve_config().eager_prefill_kernel_s == pytest.approx(per_kernel, rel=2e-3)
    for name in ("vllm", "nim", "accelsim"):
        assert load_runtime(name).serve_config().eager_prefill_kernel_s == 0.0


def test_bad_eager_settings_are_one_line(tmp_path, capsys):
    with pytest.raises(AccelsimError, match="per kernel must be within 0..1 s"):
        ServeConfig(eager_prefill_kernel_s=-1.0)
    document = yaml.safe_load(open("runtimes/tensorrt-llm.yaml"))
    del document["eager_kernel_host"]
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(document))
    args = ["serve", "--model", MODEL, "--hw", HW, "--concurrency", "2", "--requests", "4", "--prompt", "64",
            "--output", "8", "--runtime", str(bad), "--out", str(tmp_path / "out")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "eager_kernel_host" in err and "Traceback" not in err


def test_the_validation_file_turns_prefill_graphs_on_for_the_one_run_that_had_them(tmp_path, capsys):
    from accelsim.validate.serving import DEFAULT_FILE, load_points
    points = [p for p in load_points() if p.source == "inferencex" and p.metric == "ttft_p50"]
    switched = [p for p in points if any(key == "prefill_graphs" for key, _, _ in p.run.settings)]
    # InferenceX's B200 TensorRT-LLM script of 2026-02-03 captured piecewise graphs for 1k/1k at
    # TP8 EP8 only: the c64 1k/1k run; its 1k/8k sibling and the older runs ran eager.
    assert [(p.run.hw, p.run.concurrency, p.run.input_len, p.run.output_len) for p in switched] == [
        ("b200", 64, 1024, 1024)]
    assert switched[0].run.settings[0][:2] == ("prefill_graphs", True)
    # Prefill budgets from the scripts: SGLang's --chunked-prefill-size 196608 on every MI355X
    # run; TensorRT-LLM 1.1.0rc2's --max_num_tokens (CONC + ISL + 127) // 64 * 64 less the CONC
    # decodes of the iteration; the 1.2.0rc6 runs keep the preset's 8192.
    budgets = {(p.run.hw, p.run.weight_dtype, p.run.concurrency, p.run.input_len, p.run.output_len):
               dict((k, v) for k, v, _ in p.run.settings).get("max_tokens_per_step") for p in points}
    assert {v for k, v in budgets.items() if k[0] == "mi355x"} == {196608}
    assert budgets[("b200", "nvfp4", 16, 1024, 1024)] == 1152 - 16
    assert budgets[("b200", "nvfp4", 128, 1024, 1024)] == 1216 - 128
    assert budgets[("b200", "fp8", 64, 1024, 8192)] == 1152 - 64 and budgets[("b200", "fp8", 64, 8192, 1024)] == 8320 - 64
    assert budgets[("b200", "nvfp4", 64, 1024, 1024)] is None and budgets[("b200", "nvfp4", 64, 1024, 8192)] is None
    document = yaml.safe_load(DEFAULT_FILE.read_text())
    document["sources"]["inferencex"]["engine_settings"][0]["settings"] = {"prefill_graph": True}
    for name in ("measured_2025.csv", "measured_trtllm_v1.0.csv"):
        (tmp_path / name).write_text((DEFAULT_FILE.parent / name).read_text())
    (tmp_path / "serving.yaml").write_text(yaml.safe_dump(document))
    assert main(["validate", "--serving", "--points", str(tmp_path / "serving.yaml"), "--json"]) == 2
    err = capsys.readouterr().err
    assert "unknown engine setting prefill_graph" in err and "prefill_graphs" in err and "Traceback" not in err


def test_engine_settings_take_switches_as_booleans_and_budgets_as_counts():
    from pydantic import ValidationError

    from accelsim.validate.serving import EngineSetting
    where, source = {"hardware": "B200"}, "a benchmark script at some commit"
    assert EngineSetting(where=where, settings={"max_tokens_per_step": 4096}, source=source)
    with pytest.raises(ValidationError, match="max_tokens_per_step must be a count"):
        EngineSetting(where=where, settings={"max_tokens_per_step": True}, source=source)
    with pytest.raises(ValidationError, match="prefill_graphs must be true or false"):
        EngineSetting(where=where, settings={"prefill_graphs": 2}, source=source)
