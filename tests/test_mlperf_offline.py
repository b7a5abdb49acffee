"""MLPerf Inference v5.1 closed Offline rows as a serving source (validation/serving.yaml,
`mlperf-5.1-offline`): the dataset tables, the per-submission layouts, the split, the rows that
cannot be predicted, and one replay end to end through `accelsim validate --serving`."""
from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from accelsim.cli import main
from accelsim.errors import ConfigError
from accelsim.validate import serving

SOURCE = "mlperf-5.1-offline"
SCENARIO = "MLPerf Inference v5.1 closed Offline"


@pytest.fixture(scope="module")
def selection():
    return serving.read_sources()


def _offline_token_rows() -> list[dict[str, str]]:
    rows = serving._read_rows(serving.DEFAULT_FILE.parent / "measured_2025.csv")
    return [r for r in rows if r["scenario"] == SCENARIO and r["metric"] == "system output tokens/s"]


def test_every_offline_row_is_a_point_or_not_predictable_with_a_reason(selection):
    points = [p for p in selection.points if p.source == SOURCE]
    lacking = [u for u in selection.unpredictable if u.source == SOURCE]
    assert len(points) + len(lacking) == len(_offline_token_rows()) == 65
    assert len(points) >= 40
    assert any("H200-NVL" in u.reason and "no accelsim hardware config" in u.reason for u in lacking)
    assert all(len(u.reason) > 10 for u in lacking)


def test_split_is_by_submitter_and_layouts_account_for_every_chip(selection):
    rows = {f"{serving.DEFAULT_FILE.parent / 'measured_2025.csv'}:{i}": r
            for i, r in enumerate(serving._read_rows(serving.DEFAULT_FILE.parent / "measured_2025.csv"), start=2)}
    points = [p for p in selection.points if p.source == SOURCE]
    for p in points:
        row = rows[p.where]
        nvidia = "submitter=NVIDIA;" in row["notes"]
        assert p.split == ("calibration" if nvidia else "holdout"), p.id
        assert p.run.chips * p.run.replicas == int(row["chips"]), p.id
        assert p.run.load == "offline" and len(p.run.lengths) == p.run.requests
    assert {p.split for p in points} == {"calibration", "holdout"}


def test_each_runs_output_mean_is_its_own_tokens_over_samples(selection):
    by_log = {}
    for r in serving._read_rows(serving.DEFAULT_FILE.parent / "measured_2025.csv"):
        if r["scenario"] == SCENARIO:
            by_log.setdefault(r["source"], {})[r["metric"]] = float(r["value"])
    points = {p.where: p for p in selection.points if p.source == SOURCE}
    rows = serving._read_rows(serving.DEFAULT_FILE.parent / "measured_2025.csv")
    for where, p in points.items():
        row = rows[int(where.rsplit(":", 1)[1]) - 2]
        logged = by_log[row["source"]]
        mean = logged["system output tokens/s"] / logged["samples (queries)/s"]
        outputs = np.array([o for _, o in p.run.lengths])
        assert outputs.mean() == pytest.approx(mean, abs=1.0), p.id


def test_dataset_tables_match_their_stated_sample_counts_and_means():
    src = yaml.safe_load(serving.DEFAULT_FILE.read_text())["sources"][SOURCE]
    for name, bench in src["benchmarks"].items():
        spec = serving.MlperfBenchmark(**bench)
        table = serving.read_lengths(serving.DEFAULT_FILE.parent / spec.lengths, spec)
        assert len(table) == spec.samples, name
        assert abs(table[:, 0].mean() - spec.input_mean) <= 1, name


lengths_tables = st.lists(st.tuples(st.integers(1, 4000), st.integers(1, 30000)), min_size=1, max_size=60)


@settings(max_examples=40, deadline=None)
@given(lengths_tables, st.integers(1, 300), st.floats(1.0, 5000.0), st.sampled_from(["measured-mean", "reference-scaled"]),
       st.integers(0, 5))
def test_replayed_lengths_come_from_the_table_with_the_asked_output_mean(tmp_path_factory, table, requests, mean,
                                                                         outputs, seed):
    path = tmp_path_factory.mktemp("lengths") / "t.csv"
    path.write_text("input_length,output_length\n" + "".join(f"{a},{b}\n" for a, b in table))
    bench = serving.MlperfBenchmark(dataset="a test set", samples=len(table), input_max=4000, lengths="t.csv",
                                    input_mean=max(1, round(np.mean([a for a, _ in table]))),
                                    outputs=outputs, output_max=20000, source="a table written by the test")
    array = serving.read_lengths(path, bench)
    pairs = serving.replay_lengths(array, bench, requests, mean, seed)
    assert len(pairs) == requests
    assert {p for p, _ in pairs} <= {a for a, _ in table}
    got = np.mean([o for _, o in pairs])
    if outputs == "measured-mean":
        assert got == max(1, round(mean))
    else:  # rounding moves each output by at most half a token; the floor of 1 only raises it
        assert got >= mean - 0.5 and min(o for _, o in pairs) >= 1
        assert got <= mean + 1.0 or min(o for _, o in pairs) == 1
    assert pairs == serving.replay_lengths(array, bench, requests, mean, seed)  # seeded: the same replay


@pytest.mark.parametrize("cell, message", [("12.5", "whole number"), ("-3", "finite number > 0"),
                                          ("abc", "must be a number")])
def test_a_bad_lengths_cell_names_file_line_and_column(tmp_path, cell, message):
    path = tmp_path / "t.csv"
    path.write_text(f"input_length,output_length\n10,20\n{cell},5\n")
    bench = serving.MlperfBenchmark(dataset="a test set", samples=2, input_max=100, input_mean=10, lengths="t.csv",
                                    source="a table written by the test")
    with pytest.raises(ConfigError, match=message) as err:
        serving.read_lengths(path, bench)
    assert f"{path}:3" in str(err.value) and "input_length" in str(err.value)


def test_a_table_whose_mean_is_not_the_stated_one_is_refused(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("input_length,output_length\n10,20\n30,5\n")
    bench = serving.MlperfBenchmark(dataset="a test set", samples=2, input_max=100, input_mean=25, lengths="t.csv",
                                    source="a table written by the test")
    with pytest.raises(ConfigError, match="input mean 20.0 differs"):
        serving.read_lengths(path, bench)


def test_a_benchmark_needs_a_prompt_mean_or_the_reason_it_has_none():
    with pytest.raises(ValueError, match="input_mean"):
        serving.MlperfBenchmark(dataset="a test set", samples=2, input_max=100, source="a made-up source")


# --- end to end through the CLI ----------------------------------------------------------------

def _one_source_file(tmp_path, change=None, keep=("Llama-3.1-8B",), requests=40, source=SOURCE, scenario=SCENARIO):
    """A serving file with only one MLPerf source, its table cut to the NVIDIA B200 rows of
    ``keep`` (cheap to replay), ``requests`` per replica."""
    document = yaml.safe_load(serving.DEFAULT_FILE.read_text())
    src = document["sources"][source]
    src["requests_per_replica"] = requests
    document["sources"] = {source: src}
    rows = (serving.DEFAULT_FILE.parent / "measured_2025.csv").read_text(encoding="utf-8").splitlines()
    kept = [r for r in rows[1:] if scenario in r and "submitter=NVIDIA; system=B200-SXM-180GBx8_TRT" in r
            and any(f",{m}," in r for m in keep)]
    (tmp_path / "measured_2025.csv").write_text("\n".join([rows[0], *kept]) + "\n", encoding="utf-8")
    (tmp_path / "mlperf_lengths").mkdir()
    for name in ("llama-2-70b", "llama-3.1-8b", "llama-3.1-405b", "deepseek-r1"):
        (tmp_path / "mlperf_lengths" / f"{name}.csv").write_text(
            (serving.DEFAULT_FILE.parent / "mlperf_lengths" / f"{name}.csv").read_text())
    if change is not None:
        change(src)
    path = tmp_path / "serving.yaml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path


def test_one_offline_row_replays_end_to_end(tmp_path, capsys):
    path = _one_source_file(tmp_path)
    code = main(["validate", "--serving", "--points", str(path), "--source", SOURCE, "--json", "--max-error", "5"])
    assert code == 0
    payload = json.loads(capsys.readouterr().out)
    (point,) = payload["points"]
    assert point["id"] == f"{SOURCE}/NVIDIA/B200-SXM-180GBx8_TRT/Llama-3.1-8B" and point["split"] == "calibration"
    assert point["chips"] == 8 and point["hw"] == "b200" and point["measured"] == pytest.approx(136752)
    assert point["predicted"] > 0 and np.isfinite(point["error"])


def test_a_source_with_nothing_predictable_says_why_and_exits_2(tmp_path, capsys):
    def change(src):
        for bench in src["benchmarks"].values():
            bench.pop("input_mean"), bench.pop("lengths"), bench.pop("outputs", None)
            bench["input_unsourced"] = "no document states it"
    path = _one_source_file(tmp_path, change)
    assert main(["validate", "--serving", "--points", str(path), "--source", SOURCE]) == 2
    err = capsys.readouterr().err
    assert "1 row(s) not predictable" in err and "mean prompt length not sourced (no document states it)" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("change, message", [
    (lambda src: src["layouts"][0].update(replicas=3), "accounts for"),
    (lambda src: src["benchmarks"]["Llama-3.1-8B"].update(input_mean=500), "differs from the benchmark's input_mean"),
    (lambda src: src["benchmarks"].pop("Llama-3.1-8B"), "no benchmarks entry for model 'Llama-3.1-8B'"),
    (lambda src: src["layouts"][0].update(tp=0), "tp"),
])
def test_bad_serving_inputs_exit_2_with_one_line(tmp_path, capsys, change, message):
    def apply(src):
        # the first layout is the B200 8B one the cut table keeps
        first = next(i for i, lay in enumerate(src["layouts"])
                     if lay["submitter"] == "NVIDIA" and lay["system"] == "B200-SXM-180GBx8_TRT"
                     and lay["model"] == "Llama-3.1-8B")
        src["layouts"].insert(0, src["layouts"].pop(first))
        change(src)
    path = _one_source_file(tmp_path, apply)
    assert main(["validate", "--serving", "--points", str(path), "--source", SOURCE]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


# --- a submission's own engine settings and sample count (issue 17, R1 on Blackwell) -----------
@pytest.fixture(scope="module")
def r1_points():
    points = serving.read_sources().points
    return {p.id: p for p in points if p.source == SOURCE and p.run.model == "deepseek-r1"}


def test_nvidia_r1_layouts_carry_their_configs_batch_and_their_logs_sample_count(r1_points):
    gb300 = r1_points[f"{SOURCE}/NVIDIA/GB300-NVL72_GB300-288GB_aarch64x72_TRT/DeepSeek-R1"].run
    gb200 = r1_points[f"{SOURCE}/NVIDIA/GB200-NVL72_GB200-186GB_aarch64x72_TRT/DeepSeek-R1"].run
    b200 = r1_points[f"{SOURCE}/NVIDIA/B200-SXM-180GBx8_TRT/DeepSeek-R1"].run
    # gpu_batch_size per attention rank x 8 ranks, capped by max_concurrency:
    # GB300 min(1536 x 8, 10240) = 10240; B200 / GB200 min(512 x 8, 5120) = 4096; and
    # max_num_tokens per attention rank x 8: 6656 x 8 = 53248, 4608 x 8 = 36864
    assert {k: v for k, v, _ in gb300.settings} == {"max_batch": 10240, "max_tokens_per_step": 53248}
    assert {k: v for k, v, _ in gb200.settings} == {"max_batch": 4096, "max_tokens_per_step": 36864}
    assert {k: v for k, v, _ in b200.settings} == {"max_batch": 4096, "max_tokens_per_step": 36864}
    # LoadGen's generated_samples_per_query over the replicas, rounded up: 399,308 / 9, 210,624 / 9
    assert gb300.requests == 44368 == len(gb300.lengths)
    assert gb200.requests == 23403 == len(gb200.lengths)
    assert b200.requests == 26328 == len(b200.lengths)
    assert all("generated_samples_per_query" in source for _, _, source in gb300.settings)


def test_rows_without_engine_settings_keep_the_sources_defaults():
    points = serving.read_sources().points
    llama = [p for p in points if p.source == SOURCE and p.run.model != "deepseek-r1"]
    assert llama and all(p.run.settings == () and p.run.requests == 4000 for p in llama)


def test_a_layout_setting_reaches_the_serving_loop(tmp_path):
    """max_batch 3 on a one-GPU 8B replica: no step ever holds more than 3 sequences, and 7
    samples over 8 replicas round up to one request each (the hand-worked split)."""
    def change(src):
        for layout in src["layouts"]:
            if layout["submitter"] == "NVIDIA" and layout["system"] == "B200-SXM-180GBx8_TRT" \
                    and layout["model"] == "Llama-3.1-8B":
                layout.update(settings={"max_batch": 3}, samples=17)
    path = _one_source_file(tmp_path, change)
    (point,) = serving.read_sources(path).points
    assert point.run.requests == 3 == len(point.run.lengths)  # ceil(17 / 8)
    result = serving.simulate(point.run)
    assert max(s.running for s in result.steps) <= 3
    assert max(s.decodes for s in result.steps) <= 3
    assert np.isfinite(result.throughput_tokens_per_s) and result.throughput_tokens_per_s > 0


@pytest.mark.parametrize("update, message", [
    ({"settings": {"max_batchh": 8}}, "unknown layout setting max_batchh; allowed: max_batch, max_tokens_per_step"),
    ({"settings": {"max_batch": 0}}, "max_batch"),
    ({"samples": 3}, "samples 3 leave a replica of the 8 without a request"),
])
def test_a_bad_layout_setting_exits_2_with_one_line(tmp_path, capsys, update, message):
    def change(src):
        layout = next(lay for lay in src["layouts"] if lay["submitter"] == "NVIDIA"
                      and lay["system"] == "B200-SXM-180GBx8_TRT" and lay["model"] == "Llama-3.1-8B")
        layout.update(update)
    path = _one_source_file(tmp_path, change)
    assert main(["validate", "--serving", "--points", str(path), "--source", SOURCE]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


# --- Server: Poisson arrivals at the run's measured samples/s -----------------------------------

SERVER, SERVER_SCENARIO = "mlperf-5.1-server", "MLPerf Inference v5.1 closed Server"


def test_server_runs_arrive_at_their_measured_rate_split_over_replicas(selection):
    points = [p for p in selection.points if p.source == SERVER]
    assert {p.metric for p in points} == {"ttft_p50", "tpot_p50"}
    nvidia_8b = [p for p in points if p.id.startswith(f"{SERVER}/NVIDIA/B200-SXM-180GBx8_TRT/Llama-3.1-8B/")]
    assert len(nvidia_8b) == 2 and nvidia_8b[0].run is nvidia_8b[1].run  # one simulation answers both
    run = nvidia_8b[0].run
    assert run.load == "rate" and run.replicas == 8 and run.rate == pytest.approx(996.53 / 8)
    ttft = next(p for p in nvidia_8b if p.metric == "ttft_p50")
    assert ttft.measured == pytest.approx(0.4983)  # 498.3 ms in the table, seconds here
    arrivals = [r.arrival_s for r in serving._trace(run)]
    assert arrivals[0] == 0 and all(b >= a for a, b in zip(arrivals, arrivals[1:]))
    assert (len(arrivals) - 1) / arrivals[-1] == pytest.approx(run.rate, rel=0.1)


def test_one_server_run_replays_end_to_end(tmp_path, capsys):
    path = _one_source_file(tmp_path, requests=60, source=SERVER, scenario=SERVER_SCENARIO)
    code = main(["validate", "--serving", "--points", str(path), "--source", SERVER, "--json", "--max-error", "100"])
    assert code == 0
    payload = json.loads(capsys.readouterr().out)
    assert sorted(p["metric"] for p in payload["points"]) == ["tpot_p50", "ttft_p50"]
    assert all(p["predicted"] > 0 and np.isfinite(p["error"]) for p in payload["points"])


def test_a_metric_neither_compared_nor_unscored_is_refused(tmp_path, capsys):
    path = _one_source_file(tmp_path, lambda src: src["unscored"].pop("TTFT p99"), source=SERVER,
                            scenario=SERVER_SCENARIO)
    assert main(["validate", "--serving", "--points", str(path), "--source", SERVER]) == 2
    err = capsys.readouterr().err
    assert "metric 'TTFT p99' is neither compared nor unscored" in err and "Traceback" not in err
