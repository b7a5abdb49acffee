"""The streamed, column-wise sweep writes what the row-by-row path wrote before it, and the
front it reports is the row-by-row front; Parquet holds the same table as the CSV."""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from accelsim.dse import fastpath, reading, runner, search
from accelsim.dse.evaluate import Job
from accelsim.dse.space import load_space
from accelsim.model.spec import load_model
from accelsim.report.sweep import load_frame
from accelsim.workload import Workload

SPACES = Path(__file__).resolve().parent.parent / "hw_configs" / "spaces"


def _job(name: str) -> Job:
    space = load_space(SPACES / name)
    return Job(space, load_model("llama-3.1-8b"), Workload(**space.spec.workload.model_dump()))


def _row_by_row(job: Job, points: list[dict], path: Path) -> None:
    """The writer as it was before the speed work: one dict per row, one CSV line per dict."""
    sink = runner.CsvSink(path, runner.columns(job.space.keys), resume=False)
    seen: set[str] = set()
    for start in range(0, len(points), 256):
        rows = [r for r in fastpath.evaluate_points(job, points[start:start + 256])
                if not (r["point_id"] in seen or seen.add(r["point_id"]))]
        sink.write(rows)
    sink.close()


def test_streamed_grid_and_random_sweeps_write_the_same_bytes(tmp_path):
    for name, points, distinct in (
            ("hardwired.yaml", None, True),
            ("systolic.yaml", 200, False)):
        job = _job(name)
        if points is None:
            lazy, listed = search.iter_grid_points(job.space), search.grid_points(job.space)
        else:
            lazy = search.iter_random_points(job.space, points, seed=4)
            listed = search.random_points(job.space, points, seed=4)
        before, after = tmp_path / f"{name}.before.csv", tmp_path / f"{name}.after.csv"
        _row_by_row(job, listed, before)
        written = runner.stream(job, lazy, after, distinct=distinct, chunk=97)
        assert after.read_bytes() == before.read_bytes()
        assert written == before.read_text().count("\n") - 1


def test_front_and_parquet_match_the_rows(tmp_path):
    job = _job("hardwired.yaml")
    points = search.grid_points(job.space)
    csv_path = tmp_path / "results.csv"
    rows = runner.run(job, points, csv_path)
    parquet = runner.to_parquet(csv_path)
    frame = load_frame(parquet)
    from_csv = load_frame(csv_path)
    pd.testing.assert_frame_equal(frame.reset_index(drop=True), from_csv, check_dtype=False)
    conditions = job.space.constraints
    objectives = job.space.spec.objectives
    found = reading.read(frame, objectives, conditions)
    feasible_rows = search.feasible(rows, conditions)
    assert int(found.feasible.sum()) == len(feasible_rows) > 0
    front_ids = set(frame["point_id"][found.front])
    assert front_ids == {r["point_id"] for r in search.front(feasible_rows, objectives)}
    chosen = reading.pick(found, "area_mm2", "min")
    expected = search.pick(search.front(feasible_rows, objectives), "area_mm2", "min").row
    got = reading.row(frame, chosen)
    assert got["point_id"] == expected["point_id"]
    assert all(got[k] == expected[k] or (isinstance(got[k], float) and math.isclose(got[k], expected[k]))
               for k in expected)


def _sensitivity_row_by_row(frame, key, keys, metric, sense):
    """The report's sensitivity table as it was computed before (one group at a time)."""
    import numpy as np
    held = frame
    for other in keys:
        if other != key:
            levels = np.sort(frame[other].dropna().unique())
            held = held[held[other] == levels[len(levels) // 2]]
    rows = []
    for value, group in frame.groupby(key):
        ok = group[group["status"] == "ok"]
        at = held[held[key] == value]
        fits = bool((at["status"] == "ok").any())
        rows.append({key: value, f"{metric}_slice": at[metric].iloc[0] if fits else np.nan,
                     f"{metric}_best": (ok[metric].max() if sense == "max" else ok[metric].min())
                     if len(ok) else np.nan, "fits_in_slice": fits, "fraction_that_fit": len(ok) / len(group)})
    return pd.DataFrame(rows)


def test_sensitivity_tables_match_the_group_by_group_version(tmp_path):
    from accelsim.report.sweep import sensitivity
    for name, points in (("hardwired.yaml", None), ("systolic.yaml", 150)):
        job = _job(name)
        pts = search.grid_points(job.space) if points is None else search.random_points(job.space, points, 1)
        runner.run(job, pts, tmp_path / f"{name}.csv")
        frame = load_frame(runner.to_parquet(tmp_path / f"{name}.csv"))
        keys = job.space.keys
        for key in keys:
            for metric, sense in job.space.spec.objectives.items():
                got = sensitivity(frame, key, keys, metric, sense)
                want = _sensitivity_row_by_row(frame, key, keys, metric, sense)
                pd.testing.assert_frame_equal(got, want, check_dtype=False)


def _space_with_clocks(tmp_path: Path, clocks: int, capacities: int = 29) -> Path:
    import yaml
    doc = yaml.safe_load((SPACES / "hardwired.yaml").read_text(encoding="utf-8"))
    doc["parameters"][1]["linear"]["num"] = capacities
    doc["parameters"][2]["linear"]["num"] = clocks
    path = tmp_path / f"space-{capacities}-{clocks}.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return path


def test_a_million_point_grid_is_accepted_and_a_runaway_grid_refused_in_one_line(tmp_path, cli):
    """The bound stops a mistyped grid, not the million-point sweeps the runner streams (the
    benchmark's 1,000,181-point grid was refused while the bound was 1,000,000)."""
    from accelsim.dse.space import MAX_GRID_POINTS
    fixed = math.prod(p.size for p in load_space(SPACES / "hardwired.yaml").spec.parameters[:2])
    million = load_space(_space_with_clocks(tmp_path, -(-1_000_000 // fixed)))
    assert math.prod(p.size for p in million.spec.parameters) > 1_000_000
    runaway = _space_with_clocks(tmp_path, 10_000, 10_000)  # 7 x 10^8 points, each range allowed
    code, _, err = cli("sweep", "--space", str(runaway), "--out", str(tmp_path / "out"))
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    assert f"the most a sweep enumerates is {MAX_GRID_POINTS:,}" in lines[0]
    assert not (tmp_path / "out" / "results.csv").exists()
