"""Design-space exploration: fast path == one-by-one, Pareto fronts, constraints, resume, Dask."""
from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from accelsim.dse import fastpath, pareto, runner, search
from accelsim.dse.evaluate import Job, evaluate_points_scalar
from accelsim.dse.fastpath import evaluate_frame, evaluate_points
from accelsim.dse.space import Condition, load_space, point_id, point_ids
from accelsim.model.spec import load_model
from accelsim.workload import Workload

REPO = Path(__file__).resolve().parent.parent
SPACES = REPO / "hw_configs" / "spaces"
METRIC_KEYS = ("tokens_per_s_per_user", "tokens_per_s", "latency_s", "joules_per_token", "power_w",
               "area_mm2", "die_mm2", "dies", "reticle_limited", "usd_per_mtoken", "breakeven_mtokens")


def _job(name: str, **workload) -> Job:
    space = load_space(SPACES / name)
    w = Workload(**{**space.spec.workload.model_dump(), **workload})
    return Job(space, load_model("llama-3.1-8b"), w)


def _assert_rows_equal(fast: list[dict], slow: list[dict]) -> None:
    assert len(fast) == len(slow)
    for f, s in zip(fast, slow):
        assert f["point_id"] == s["point_id"]
        assert f["status"] == s["status"], (f, s)
        assert f["reason"] == s["reason"]
        for key in METRIC_KEYS:
            if s["status"] == "ok" and (f[key] is None or s[key] is None):
                assert f[key] is None and s[key] is None, (key, f[key], s[key])
            elif s["status"] == "ok":
                assert math.isclose(f[key], s[key], rel_tol=1e-9), (key, f[key], s[key])


def _vectorised(job: Job, points: list[dict]) -> list[dict]:
    """The fast path's rows, after checking that it really evaluated them as columns: every
    point whose spec validates is placed and costed vectorised; only refused specs (whose
    refusal line comes from the scalar path) go one by one."""
    notes: list[str] = []
    table = fastpath.evaluate(job, points, notes)
    rows = table.records()
    invalid = sum(r["status"] == "invalid" for r in rows)
    assert table.one_by_one == invalid, notes
    assert table.vectorised == len(points) - invalid > 0, notes
    assert f"{table.vectorised} point(s) evaluated vectorised, {invalid} one by one" in notes
    return rows


@pytest.mark.parametrize("space_file", ["hardwired.yaml", "systolic.yaml"])
def test_fast_path_equals_one_by_one_on_random_points(space_file):
    job = _job(space_file)
    points = search.random_points(job.space, 10, seed=7)
    fast = _vectorised(job, points)
    slow = evaluate_points_scalar(job, points)
    _assert_rows_equal(fast, slow)
    assert any(r["status"] == "ok" for r in fast)


def test_fast_path_equals_one_by_one_on_a_gpu_space(write):
    space = write("gpu.yaml", """
name: gpu-test
base: h100-sxm
parameters:
  - key: gpu.sms
    values: [66, 100, 132, 133]
  - key: memory.l2.capacity
    log: {start: 1 MiB, stop: 64 MiB, num: 3}
  - key: memory.hbm.bandwidth
    linear: {start: 1 TB/s, stop: 4 TB/s, num: 2}
objectives: {tokens_per_s: max, joules_per_token: min}
""")
    job = Job(load_space(space), load_model("llama-3.1-8b"), Workload(batch=4, context=512))
    points = search.grid_points(job.space)
    _assert_rows_equal(_vectorised(job, points), evaluate_points_scalar(job, points))


def test_fast_path_refuses_invalid_points_as_one_by_one_does(write):
    # No derived peak: only combinations with 2 x MACs x clock within 3 % of the stated int4 peak
    # pass the spec's cross-section check, which runs per point; static power above the TDP
    # fails inside one section, and "-64 MiB" fails on its own value.
    space = write("invalid.yaml", """
name: invalid-points
base: hardwired-llama-3.1-8b
parameters:
  - key: hardwired.macs
    values: [4194304, 4300000, 8388608]
  - key: compute.clock
    values: [1 GHz, 0.5 GHz]
  - key: power.static
    values: [40 W, 300 W]
  - key: memory.sram.capacity
    values: [512 MiB, -64 MiB]
objectives: {area_mm2: min}
""")
    job = Job(load_space(space), load_model("llama-3.1-8b"), Workload(batch=1, context=2048))
    points = search.grid_points(job.space)
    fast, slow = _vectorised(job, points), evaluate_points_scalar(job, points)
    _assert_rows_equal(fast, slow)
    reasons = {r["reason"] for r in fast if r["status"] == "invalid"}
    # At 40 W and 512 MiB: 4194304 and 4300000 (2.5 % off) MACs at 1 GHz, 8388608 at 0.5 GHz.
    assert sum(r["status"] == "ok" for r in fast) == 3
    assert any("disagrees with 2 x hardwired.macs x clock" in r for r in reasons)
    assert any("static power cannot exceed TDP" in r for r in reasons)
    assert any("memory.sram.capacity" in r for r in reasons)
    assert all(r.count("\n") == 0 and "invalid.yaml" in r for r in reasons)


def test_fast_path_equals_one_by_one_on_a_gpu_space_with_refused_points(write):
    space = write("gpu-bad.yaml", """
name: gpu-bad
base: h100-sxm
parameters:
  - key: gpu.sms
    values: [0, 66, 133]
  - key: memory.hbm.capacity
    values: [8 GB, 80 GB]
  - key: efficiency.memory
    values: [0.7, 1.5]
objectives: {tokens_per_s: max}
""")
    job = Job(load_space(space), load_model("llama-3.1-8b"), Workload(batch=2, context=1024))
    points = search.grid_points(job.space)
    fast = _vectorised(job, points)
    _assert_rows_equal(fast, evaluate_points_scalar(job, points))
    assert {r["status"] for r in fast} == {"ok", "invalid", "does not fit"}
    frame = evaluate_frame(job, points)
    assert frame["point_id"].tolist() == [r["point_id"] for r in fast]
    assert frame["status"].tolist() == [r["status"] for r in fast]


@settings(max_examples=30, deadline=None)
@given(st.lists(st.dictionaries(st.sampled_from(["a.b", "c", "d.e.f"]),
                                st.one_of(st.integers(), st.floats(allow_nan=False), st.text(max_size=4),
                                          st.booleans(), st.lists(st.integers(), max_size=2)),
                                min_size=3), min_size=1, max_size=6))
def test_point_ids_column_wise_equal_point_id(points):
    keys = list(points[0])
    points = [{k: p.get(k, 0) for k in keys} for p in points]
    encoded = [fastpath._codes([p[k] for p in points]) for k in keys]
    ids = point_ids(keys, [d for d, _ in encoded], [i for _, i in encoded])
    assert ids == [point_id(p) for p in points]


def test_process_pool_equals_one_process(tmp_path):
    job = _job("hardwired.yaml")
    points = search.grid_points(job.space)[::3]
    one = runner.run(job, points, tmp_path / "one.csv")
    two = runner.run(job, points, tmp_path / "two.csv", workers=2, chunk=64)
    # a breakeven that never comes is an empty cell (NaN), equal to itself here
    pd.testing.assert_frame_equal(pd.DataFrame(two), pd.DataFrame(one))
    assert runner.pool_chunk(100_000, 2, 256) == 12_500 and runner.pool_chunk(100, 2, 256) == 256


def test_results_csv_keeps_numeric_looking_point_ids_as_text(tmp_path):
    fields = runner.columns(["a"])
    sink = runner.CsvSink(tmp_path / "r.csv", fields, resume=False)
    sink.write([{"point_id": "1234567890123456", "a": 2.5, "status": "invalid", "reason": "1e3"},
                {"point_id": "0123e45678901234", "a": 1.0, "status": "ok", "reason": ""}])
    sink.close()
    rows = runner.read_rows(tmp_path / "r.csv")
    assert [r["point_id"] for r in rows] == ["1234567890123456", "0123e45678901234"]
    assert rows[0]["reason"] == "1e3" and rows[0]["a"] == 2.5


def test_hardwired_sram_cliff_is_a_real_boundary():
    job = _job("hardwired.yaml")
    base = {"hardwired.macs": 4194304, "compute.clock": "1000000000.0 Hz"}
    sizes = next(p for p in job.space.parameters if p.key == "memory.sram.capacity").grid()
    rows = evaluate_points(job, [{**base, "memory.sram.capacity": s} for s in sizes])
    kv = 32 * 2 * 8 * 128 * 2049 * 2  # layers x (K,V) x kv heads x head dim x tokens x bf16 bytes
    for size, row in zip(sizes, rows):
        fits = float(size.split()[0]) >= kv
        assert (row["status"] == "ok") == fits, (size, row["status"])


def test_pareto_front_on_a_hand_made_set():
    # (throughput to maximise, area to minimise)
    pts = np.array([[10, 5], [8, 3], [10, 6], [6, 3], [12, 9], [8, 3], [4, 1]], dtype=float)
    values = pareto.oriented([pts[:, 0], pts[:, 1]], ["max", "min"])
    mask = pareto.pareto_mask(values)
    # [10,6] is dominated by [10,5]; [6,3] by [8,3]; the duplicate [8,3] stays on the front.
    assert mask.tolist() == [True, True, False, False, True, True, True]
    assert pareto.non_dominated_ranks(values).tolist() == [0, 0, 1, 1, 0, 0, 0]
    assert pareto.dominates(values[0], values[2]) and not pareto.dominates(values[0], values[1])
    crowd = pareto.crowding_distance(values[[6, 1, 0, 4]])
    assert np.isinf(crowd[0]) and np.isinf(crowd[3]) and np.all(np.isfinite(crowd[1:3]))


def test_constraint_violations_are_excluded():
    rows = [{"status": "ok", "power_w": p, "tokens_per_s_per_user": t, "area_mm2": a}
            for p, t, a in [(150, 1200, 500), (250, 3000, 400), (190, 900, 300), (199, 1000, 450)]]
    rows.append({"status": "does not fit"})
    from accelsim.dse.space import Condition
    conds = [Condition.parse("power_w<=200", "t"), Condition.parse("tokens_per_s_per_user>=1000", "t")]
    ok = search.feasible(rows, conds)
    assert [r["area_mm2"] for r in ok] == [500, 450]
    assert search.pick(ok, "area_mm2", "min").row["area_mm2"] == 450
    assert search.violation(rows[1], conds) == pytest.approx(0.25)
    assert search.violation(rows[4], conds) == math.inf


def test_nsga2_finds_the_grid_front():
    job = _job("hardwired.yaml")
    objectives = {"tokens_per_s_per_user": "max", "area_mm2": "min"}
    rows = search.nsga2(job.space, lambda pts: evaluate_points(job, pts), objectives,
                        job.space.constraints, samples=192, seed=3, population=32)
    found = {r["point_id"] for r in search.front(search.feasible(rows, job.space.constraints), objectives)}
    grid = evaluate_points(job, search.grid_points(job.space))
    true = search.front(search.feasible(grid, job.space.constraints), objectives)
    best_true = max(r["tokens_per_s_per_user"] for r in true)
    best_found = max(r["tokens_per_s_per_user"] for r in rows if r["status"] == "ok")
    assert best_found >= 0.9 * best_true
    assert found & {r["point_id"] for r in true}


def _sweep_cmd(out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "accelsim", "sweep", "--space", str(SPACES / "systolic.yaml"),
            "--out", str(out), "--search", "random", "--samples", "1200", "--seed", "5", "--no-report", *extra]


@pytest.mark.parametrize("workers", ["1", "2"])
def test_kill_and_resume_gives_identical_results(tmp_path, workers):
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    env = {**os.environ, "ACCELSIM_DSE_CHUNK": "8"}
    subprocess.run(_sweep_cmd(whole), check=True, capture_output=True, env=env)
    proc = subprocess.Popen(_sweep_cmd(broken, "--workers", workers), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    results = broken / "results.csv"
    deadline = time.time() + 30
    while time.time() < deadline and (not results.exists() or results.read_text().count("\n") < 40):
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = results.read_text().count("\n") - 1
    assert 0 < partial < 1200, "the kill must land mid-sweep"
    # At once: the killed sweep's lock is gone with it (its workers never held it).
    subprocess.run(_sweep_cmd(broken, "--resume", "--workers", workers), check=True, capture_output=True,
                   env=env)
    expected = sorted(runner.read_rows(whole / "results.csv"), key=lambda r: r["point_id"])
    got = sorted(runner.read_rows(results), key=lambda r: r["point_id"])
    assert got == expected
    # Byte for byte, up to the order in which chunks landed.
    assert sorted(results.read_bytes().splitlines()) == sorted((whole / "results.csv").read_bytes().splitlines())


def test_dask_local_cluster_equals_local_run(tmp_path):
    distributed = pytest.importorskip("dask.distributed", reason="dask[distributed] not installed")
    job = _job("systolic.yaml")
    points = search.random_points(job.space, 40, seed=2)
    local = runner.run(job, points, tmp_path / "local.csv", chunk=8)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        remote = runner.run(job, points, tmp_path / "dask.csv", scheduler=client, chunk=8)
    assert remote == local


def test_bad_space_file_gives_one_line_and_exit_2(cli, write):
    bad = write("bad.yaml", """
name: bad
base: hardwired-llama-3.1-8b
parameters:
  - key: hardwired.maks
    values: [1048576]
objectives: {area_mm2: min}
""")
    code, _out, err = cli("sweep", "--space", str(bad), "--out", str(bad.parent / "o"))
    assert code == 2
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "bad.yaml" in err and "hardwired.maks" in err and "did you mean 'macs'" in err

    wrong = write("wrong.yaml", "name: w\nbase: tpu-v5e\nparameters: [{key: systolic.rows, values: [8]}]\n"
                                "objectives: {speed: max}\n")
    code, _, err = cli("sweep", "--space", str(wrong), "--out", str(bad.parent / "o"))
    assert code == 2 and "wrong.yaml" in err and "tokens_per_s_per_user" in err and err.count("\n") == 1


def test_sweep_cli_writes_report_and_report_command_redraws_it(cli, tmp_path):
    out = tmp_path / "dse"
    code, stdout, err = cli("sweep", "--space", str(SPACES / "hardwired.yaml"), "--out", str(out),
                            "--search", "random", "--samples", "60", "--target",
                            "tokens_per_s_per_user>=1000", "--constraint", "power_w<=200")
    assert code == 0, err
    assert "chosen (min area_mm2)" in stdout
    for name in ("results.csv", "pareto.csv", "report.md", "report.html", "pareto.png", "sweep.json"):
        assert (out / name).is_file(), name
    (out / "report.html").unlink()
    code, _, err = cli("report", str(out))
    assert code == 0 and (out / "report.html").is_file(), err


def test_breakeven_objective_same_on_both_paths_and_never_is_empty():
    """A sweep weighs each design's NRE against a merchant chip's $/Mtoken: the fast path and the
    one-by-one path agree, and a reference no design undercuts gives no value (never NaN)."""
    from dataclasses import replace

    from accelsim.dse.metrics import Reference
    job = _job("hardwired.yaml")
    points = search.random_points(job.space, 6, seed=3)
    cheap = replace(job, reference=Reference("h100-sxm", 2.76))
    fast, slow = _vectorised(cheap, points), evaluate_points_scalar(cheap, points)
    _assert_rows_equal(fast, slow)
    ok = [r for r in fast if r["status"] == "ok"]
    assert ok and all(r["breakeven_mtokens"] is not None and r["breakeven_mtokens"] > 0 for r in ok)
    # the design whose $/Mtoken is lowest pays its NRE back soonest
    soonest = min(ok, key=lambda r: r["breakeven_mtokens"])
    assert soonest["usd_per_mtoken"] == min(r["usd_per_mtoken"] for r in ok)
    free = replace(job, reference=Reference("free", 1e-9))
    never = _vectorised(free, points)
    assert all(r["breakeven_mtokens"] is None for r in never if r["status"] == "ok")
    assert search.pick([r for r in never if r["status"] == "ok"], "breakeven_mtokens", "min").row is None
    assert search.feasible(never, [Condition.parse("breakeven_mtokens<=1e9", "test")]) == []
