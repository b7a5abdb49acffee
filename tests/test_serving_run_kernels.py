"""The serving replay runs a measured run on the kernel library it ran (``engine_settings``'
``kernels`` / ``kv_dtype``), as the same runs' decode points do (``validation/points.yaml``)."""

from __future__ import annotations

import pytest
import yaml

from accelsim.api import load_runtime
from accelsim.cli import main
from accelsim.validate import serving
from accelsim.validate.points import DEFAULT_POINTS, Catalogue


def inferencex_runs(hw: str) -> list[serving.ServingRun]:
    return [p.run for p in serving.load_points() if p.source == "inferencex" and p.run.hw == hw]


def test_the_october_mi355x_runs_replay_on_the_triton_kernels_and_bf16_kv_their_points_name():
    runs = inferencex_runs("mi355x")
    old = [r for r in runs if (r.input_len, r.output_len) != (1024, 1024)]
    new = [r for r in runs if (r.input_len, r.output_len) == (1024, 1024)]
    assert old and new
    # The 2025-10-06 runs (1k/8k and 8k/1k) ran SGLang v0.5.2's triton decode with a bf16 cache;
    # the 2026-02-27 runs (1k/1k) AITER with FP8 (InferenceX pull 330).
    assert {(r.kernels, r.kv_dtype) for r in old} == {("sglang-0.5.2-rocm-triton", "bf16")}
    assert {(r.kernels, r.kv_dtype) for r in new} == {(None, "fp8")}
    points = Catalogue(DEFAULT_POINTS).spec.points
    named = {(p.input_len > 2000, p.output_len > 2000, p.batch): (p.runtime, p.dtype)
             for p in points if p.hw == "mi355x" and p.id.endswith("inferencex-agg")}
    assert {v for (long_in, long_out, _), v in named.items() if long_in or long_out} == {
        ("sglang-0.5.2-rocm-triton", "bf16")}
    assert all(r.kernels is None for r in inferencex_runs("b200"))


def test_a_runs_kernels_replace_the_presets_own_and_keep_the_rest():
    preset = load_runtime("sglang")
    ran = serving.with_kernels(preset, "sglang-0.5.2-rocm-triton")
    share = serving.points_runtimes()["sglang-0.5.2-rocm-triton"].gpu.attention_bandwidth
    assert ran.kernels is not None and ran.kernels.value.attention_bandwidth == share
    own = preset.kernels.value.model_dump(exclude_none=True) if preset.kernels is not None else {}
    assert {k: v for k, v in ran.kernels.value.model_dump(exclude_none=True).items()
            if k != "attention_bandwidth"} == {k: v for k, v in own.items() if k != "attention_bandwidth"}
    assert ran.step_overhead == preset.step_overhead and ran.max_tokens_per_step == preset.max_tokens_per_step


def test_a_run_on_triton_kernels_decodes_slower_at_long_context():
    run = next(r for r in inferencex_runs("mi355x") if r.kernels is not None and r.concurrency == 4)
    on_triton = serving.simulate(run)
    on_preset = serving.simulate(serving.ServingRun(**{**run.__dict__, "kernels": None}))
    assert on_triton.tokens_per_s_per_user < on_preset.tokens_per_s_per_user


@pytest.mark.parametrize(("entry", "needle"), [
    ({"kernels": "sglang-9.9-nowhere"}, "not a runtime of points.yaml; allowed:"),
    ({"kv_dtype": "fp7"}, "kv_dtype"),
    ({}, "needs settings, kernels or kv_dtype"),
])
def test_bad_kernel_settings_are_one_line(tmp_path, capsys, entry, needle):
    document = yaml.safe_load(serving.DEFAULT_FILE.read_text())
    document["sources"]["inferencex"]["engine_settings"].append(
        {"where": {"hardware": "MI355X"}, "source": "a benchmark script at some commit", **entry})
    for name in ("measured_2025.csv", "measured_trtllm_v1.0.csv"):
        (tmp_path / name).write_text((serving.DEFAULT_FILE.parent / name).read_text())
    (tmp_path / "serving.yaml").write_text(yaml.safe_dump(document))
    assert main(["validate", "--serving", "--points", str(tmp_path / "serving.yaml"), "--json"]) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
