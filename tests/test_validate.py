"""`accelsim validate`: the points table, the calibration split and the bound check."""
import csv
import json

import pandas as pd
import pytest
import yaml

from accelsim.validate.points import DEFAULT_POINTS, VALIDATION_DIR, Catalogue, select, split
from accelsim.validate.predict import (
    Calibration,
    calibrated,
    current_calibration,
    decode_contexts,
    gemm_op,
    stream_op,
)
from accelsim.validate.run import POINT_COLUMNS


@pytest.fixture(scope="module")
def catalogue():
    return Catalogue()


def test_measurements_are_verbatim_copies_of_refdata():
    for name in ("measured_inference.csv", "kernels.csv"):
        ours = (VALIDATION_DIR / name).read_text(encoding="utf-8")
        header = ours.splitlines()[0]
        assert "source_url" in header and "status" in header


def test_every_csv_row_is_a_point_or_has_a_reason(catalogue):
    accounted = {}
    for p in catalogue.points:
        accounted.setdefault(p.source.file, []).append(p.source.row)
    for group in catalogue.spec.not_predictable:
        accounted.setdefault(group.file, []).extend(group.rows)
    for name, table in catalogue.rows.items():
        assert sorted(accounted[name]) == list(range(1, len(table) + 1)), name


def test_measured_values_come_from_the_csv_row(catalogue):
    point = next(p for p in catalogue.points if p.id == "h100-sxm/ttft/llama-2-7b/fp8/tp1/b1-i2048-o1")
    measured = catalogue.measured(point)
    assert measured.value == pytest.approx(0.036)  # 36 ms in the TensorRT-LLM v0.5 table
    assert measured.unit == "s" and "TensorRT-LLM" in measured.source_url


def test_split_is_deterministic_disjoint_and_covers_every_point(catalogue):
    first, second = split(catalogue.points), split(list(reversed(catalogue.points)))
    assert first == second
    cal = {p.id for p in select(catalogue, "calibration")}
    hold = {p.id for p in select(catalogue, "holdout")}
    early = {p.id for p in select(catalogue, "preliminary")}
    assert not cal & hold and not early & (cal | hold)
    assert cal | hold | early == {p.id for p in catalogue.points}
    assert early == {p.id for p in catalogue.points if p.preliminary} != set()
    # each (hardware, metric, chip count) stratum is halved: sizes differ by at most one
    groups = {}
    for p in catalogue.points:
        if not p.preliminary and p.split is None:  # family points follow their own rule
            groups.setdefault((p.hw, p.metric, p.chips), []).append(first[p.id])
    for labels in groups.values():
        assert abs(labels.count("calibration") - labels.count("holdout")) <= 1


def test_family_points_are_split_by_source_not_by_row(catalogue):
    """The issue-17 rule: within each family, InferenceX aggregated single-node runs calibrate and
    disaggregated decode pools are held out -- a function of the run, never of the row."""
    assignment = split(catalogue.points)
    family_of = {hw: name for name, members in catalogue.spec.families.items() for hw in members}
    family_points = [p for p in catalogue.points if p.hw in family_of]
    assert family_points and all(p.split is not None for p in family_points)
    for p in family_points:
        expected = "calibration" if p.prefill_interleaved else "holdout"
        assert assignment[p.id] == p.split == expected, p.id
    for family in catalogue.spec.families:
        halves = {assignment[p.id] for p in family_points if family_of[p.hw] == family}
        assert halves == {"calibration", "holdout"}, family


def test_adding_a_point_leaves_other_chip_counts_halves_alone(catalogue):
    before = split(catalogue.points)
    extra = next(p for p in catalogue.points if p.hw == "h100-sxm" and p.metric == "ttft" and p.chips == 1)
    after = split([*catalogue.points, extra.model_copy(update={"id": extra.id + "/copy", "batch": 128})])
    assert all(after[p.id] == before[p.id] for p in catalogue.points if p.chips > 1)


def test_split_puts_short_and_long_prompts_in_both_halves(catalogue):
    # a fixed per-request cost and a per-token cost are only told apart by a fit that sees both
    assignment = split(catalogue.points)
    for hw in ("a100-sxm", "h100-sxm"):
        ttft = [p for p in catalogue.points if p.hw == hw and p.metric == "ttft" and p.chips == 1]
        for half in ("calibration", "holdout"):
            lengths = {p.input_len for p in ttft if assignment[p.id] == half}
            assert lengths == {128, 2048}, (hw, half, lengths)


def test_decode_contexts_span_the_generated_tokens():
    # 128-token prompt, 128 outputs: decode steps see 128 .. 254 cached tokens
    contexts = decode_contexts(128, 128)
    assert contexts[0] == 128 and contexts[-1] == 254 and len(contexts) == 5
    assert list(decode_contexts(128, 2)) == [128]


def test_kernel_ops_have_the_benchmark_shapes():
    op = gemm_op(1024, 2145, 1024, "fp8")
    assert op.flops == 2 * 1024 * 2145 * 1024
    assert op.outputs[0].dtype == "bf16"
    triad = stream_op(2, 1, 2)  # a = b + s * c: three 256 MiB arrays
    assert triad.bytes_moved == 3 * 2 ** 28


def test_calibration_replaces_only_the_fitted_constants():
    from accelsim.api import resolve_hardware
    hw = resolve_hardware("h100-sxm")
    new = calibrated(hw, Calibration(0.5, 0.6, 7e-6))
    assert current_calibration(new) == Calibration(0.5, 0.6, 7e-6)
    assert new.memory == hw.memory and new.compute == hw.compute


def test_smoke_run_writes_the_error_table(cli, tmp_path):
    code, out, err = cli("validate", "--subset", "smoke", "--max-error", "1.0", "--out", str(tmp_path), "--json")
    assert code == 0, err
    data = json.loads(out)
    smoke = yaml.safe_load(DEFAULT_POINTS.read_text())["smoke"]
    assert sorted(r["id"] for r in data["points"]) == sorted(smoke)
    assert set(data["points"][0]) == set(POINT_COLUMNS)
    for row in data["points"]:
        assert row["measured"] > 0 and row["predicted"] > 0
        assert row["error"] == pytest.approx(row["predicted"] / row["measured"] - 1, abs=1e-8)
    with (tmp_path / "summary.csv").open() as handle:
        header = next(csv.reader(handle))
    assert header == ["hw", "metric", "split", "points", "median_abs_error", "mean_abs_error", "max_abs_error"]
    assert (tmp_path / "validation_ttft.png").stat().st_size > 0


def test_bound_exceeded_exits_1(cli):
    code, _, err = cli("validate", "--subset", "smoke", "--max-error", "0.0001")
    assert code == 1
    assert "median |error| above" in err


def test_bad_subset_is_one_line_exit_2(cli):
    code, _, err = cli("validate", "--subset", "nope")
    assert code == 2 and "nope" in err


def test_tpot_point_is_one_decode_step_with_the_prompt_cached(catalogue):
    from accelsim.api import resolve_hardware, simulate
    from accelsim.transform import Parallelism
    from accelsim.validate.predict import predict
    from accelsim.workload import Workload
    point = next(p for p in catalogue.points if p.kind == "tpot" and p.model == "llama-2-7b")
    hw = resolve_hardware(point.hw)
    step = simulate("llama-2-7b", hw, Workload("decode", batch=point.batch, prompt=point.input_len,
                                              context=point.input_len),
                    weight_dtype="bf16", act_dtype="bf16", kv_dtype="bf16",
                    parallelism=Parallelism(tp=point.chips))
    assert predict(point, hw).value == pytest.approx(step.latency_s)
    assert catalogue.measured(point).unit == "s"  # ms/token read as seconds per step


def test_fit_uses_single_chip_points_when_a_chip_has_them(catalogue):
    from accelsim.validate.calibrate import fitted_points
    h100 = [p for p in catalogue.points if p.hw == "h100-sxm"]
    assert {p.chips for p in fitted_points(h100)} == {1}
    tpu = [p for p in catalogue.points if p.hw == "tpu-v4"]
    assert tpu and fitted_points(tpu) == tpu  # measured only on multi-chip slices


class _Synthetic:
    """A catalogue whose 'measurements' are accelsim's own predictions under known constants."""

    def __init__(self, points, hw, truth):
        from accelsim.validate.predict import calibrated, predict
        chip = calibrated(hw, truth)
        self.values = {p.id: predict(p, chip).value for p in points}

    def measured(self, point):
        from accelsim.validate.points import Measured
        return Measured(value=self.values[point.id], unit="x", status="synthetic", source_url="-")

    def runtime(self, point):
        return None


def test_fit_recovers_known_constants_from_kernel_points(catalogue):
    # GEMMs from 1024^3 (launch-bound) to 16384^3 (compute-bound) and stream kernels
    # (bandwidth-bound) identify compute, memory and the per-kernel overhead.
    from accelsim.api import resolve_hardware
    from accelsim.validate.calibrate import fit_hardware
    from accelsim.validate.predict import Calibration, current_calibration
    points = [p for p in catalogue.points if p.hw == "h100-sxm" and p.kind in ("gemm", "bandwidth")]
    hw = resolve_hardware("h100-sxm")
    base = current_calibration(hw)
    truth = Calibration(0.72, 0.88, 6e-6, base.step_s, base.request_s)
    fit = fit_hardware("h100-sxm", points, _Synthetic(points, hw, truth))
    assert fit.loss_after < 1e-3 < fit.loss_before
    assert fit.after.compute == pytest.approx(0.72, abs=0.03)
    assert fit.after.memory == pytest.approx(0.88, abs=0.03)
    assert fit.after.overhead_s == pytest.approx(6e-6, abs=1.5e-6)


def test_palm_configs_match_the_published_parameter_counts():
    # PaLM (Chowdhery et al. 2022, Table 1): 62.50B and 540.35B; the served 540B pads 48 heads to 64.
    from accelsim.model.lower import lower
    from accelsim.validate.predict import model_for
    from accelsim.workload import Workload

    def params(spec):
        return lower(spec, Workload("decode", batch=1, context=1)).param_count

    palm540 = model_for("validation/models/palm-540b-64heads.yaml")
    unpadded = palm540.model_copy(update={"attention": palm540.attention.model_copy(update={"num_heads": 48})})
    # within 0.01 %: the modelled LayerNorm biases add 2.2M parameters that PaLM lacks
    assert params(unpadded) == pytest.approx(540.35e9, rel=1e-4)
    assert params(model_for("validation/models/palm-62b.yaml")) == pytest.approx(62.50e9, rel=1e-4)
    assert params(palm540) - params(unpadded) == pytest.approx(17.8e9, rel=0.01)  # "about 18B"


def test_llama_2_13b_config_matches_the_published_parameter_count():
    # Touvron et al. 2023 (Llama 2), Table 1: 13B; 13,015,864,320 from its Hugging Face config
    from accelsim.model.lower import lower
    from accelsim.validate.predict import model_for
    from accelsim.workload import Workload
    spec = model_for("validation/models/llama-2-13b.yaml")
    assert lower(spec, Workload("decode", batch=1, context=1)).param_count == pytest.approx(13.0e9, rel=0.002)


def test_preliminary_points_are_reported_but_never_fitted_or_bounded(catalogue):
    from accelsim.validate.run import gate
    early = [p for p in catalogue.points if p.preliminary]
    assert early and all(p.hw == "h200" for p in early)
    assert not {p.id for p in early} & {p.id for p in select(catalogue, "calibration")}
    frame = pd.DataFrame([{"hw": "h200", "metric": "decode_throughput", "split": "preliminary", "abs_error": 0.9},
                          {"hw": "h200", "metric": "decode_throughput", "split": "holdout", "abs_error": 0.05}])
    checked = gate(frame, 0.15)
    assert checked["points"].tolist() == [1] and bool(checked["pass"].all())


def test_pope_prefill_points_run_on_the_2d_grid(catalogue):
    from accelsim.api import resolve_hardware
    from accelsim.validate.predict import model_for, predict
    points = [p for p in catalogue.points if p.hw == "tpu-v4" and p.kind == "ttft"]
    assert {(p.chips, p.tp_x) for p in points} == {(64, 4), (16, 2)}
    hw = resolve_hardware("tpu-v4")
    # Table D.3 does not state its weight format: every row is compute-bound, so int8 weights
    # would predict the same as the bf16 the points use.
    for p in (p for p in points if p.input_len == 60 and p.batch in (4, 256)):
        assert p.weight_dtype is None and model_for(p.model).num_layers == 118
        bf16 = predict(p, hw).value
        assert predict(p.model_copy(update={"weight_dtype": "int8"}), hw).value == pytest.approx(bf16, rel=2e-3)


def test_decode_steps_point_sums_its_steps(catalogue):
    # 64 steps at contexts 2048 .. 2111: decode time is affine in the context, so the sum is
    # 64 x the mean of the first and last step
    from accelsim.api import resolve_hardware, simulate
    from accelsim.transform import Parallelism
    from accelsim.validate.predict import model_for, predict
    from accelsim.workload import Workload
    point = next(p for p in catalogue.points if p.kind == "decode_steps" and p.chips == 16)
    assert (point.batch, point.input_len, point.output_len, point.attention) == (32, 2048, 64, "batch")
    hw = resolve_hardware(point.hw)
    par = Parallelism(tp=point.chips, tp_x=point.tp_x, attention="batch")

    def step(context):
        return simulate(model_for(point.model), hw, Workload("decode", batch=32, prompt=2048, context=context),
                        weight_dtype="int8", act_dtype="bf16", kv_dtype="bf16", parallelism=par,
                        allow_long_context=True).latency_s  # measured past PaLM's 2,048 window

    assert predict(point, hw).value == pytest.approx(64 * (step(2048) + step(2111)) / 2, rel=2e-3)


def test_tensorrt_llm_v09_rows_are_read_with_their_runtime(catalogue):
    # TensorRT-LLM v0.9.0 performance.md: Llama 2 7B, H100 FP8, batch 1, 2048 tokens -> 30.8 ms
    point = next(p for p in catalogue.points if p.id == "h100-sxm/ttft/llama-2-7b/fp8/tp1/b1-i2048-o1/v0.9")
    assert catalogue.measured(point).value == pytest.approx(0.0308)
    runtime = catalogue.runtime(point)
    assert (runtime.gpu.attention, runtime.gpu.attention_dtype) == ("grouped", "fp16")
    v09 = [p for p in catalogue.points if p.source.file == "measured_trtllm_v0.9.csv"]
    assert {p.runtime for p in v09} == {"tensorrt-llm-v0.9"}
    # Mistral / Falcon throughput depends on an unstated decode-attention kernel: TTFT only
    assert {p.kind for p in v09 if "mistral" in p.model or "falcon" in p.model} == {"ttft"}


def test_interactivity_rows_are_read_as_seconds_per_token(catalogue):
    """InferenceX's interactivity is tokens/s per user = 1 / TPOT: compared as s/token."""
    points = [p for p in catalogue.points if p.kind == "interactivity"]
    assert points
    for p in points[:3]:
        row = catalogue.row(p.source)
        measured = catalogue.measured(p)
        assert measured.unit == "s" and p.metric == "tpot"
        assert measured.value == pytest.approx(1.0 / float(row["value"]))
        assert "InferenceX" in measured.source_url


def test_unknown_family_is_one_line(cli):
    code, _, err = cli("calibrate", "--family", "nope")
    assert code == 2 and "blackwell" in err and len(err.strip().splitlines()) == 1
