"""The fast path keeps placement outcomes and whole-spec check outcomes across chunks (keyed by
the validated section objects they read, issue 20) and writes CSV cells from columns.  A sweep
cut into many small chunks, with every memo warm, must write exactly the cells that one cold
chunk writes, and its rows must equal the one-by-one path's."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from accelsim.dse import fastpath, runner, search
from accelsim.dse.evaluate import Job, evaluate_points_scalar
from accelsim.dse.space import METRICS, load_space
from accelsim.model.spec import load_model
from accelsim.workload import Workload

SPACES = Path(__file__).resolve().parent.parent / "hw_configs" / "spaces"


def _job(name: str) -> Job:
    space = load_space(SPACES / name)
    return Job(space, load_model("llama-3.1-8b"), Workload(**space.spec.workload.model_dump()))


@pytest.mark.parametrize("name", ["hardwired.yaml", "systolic.yaml"])
def test_warm_small_chunks_write_the_cells_of_one_cold_chunk(name):
    job = _job(name)
    points = search.grid_points(job.space)
    fields = runner.columns(job.space.keys)
    fastpath._SECTIONS.clear()
    cold = fastpath.evaluate(job, points).cells(fields)
    assert cold is not None
    warm: list[list] = [[] for _ in fields]
    for start in range(0, len(points), 61):  # many chunks: later ones meet memoised outcomes
        cells = fastpath.evaluate(job, points[start:start + 61]).cells(fields)
        assert cells is not None
        for column, part in zip(warm, cells):
            column.extend(part)
    assert warm == cold
    statuses = set(cold[fields.index("status")])
    assert "ok" in statuses
    if name == "hardwired.yaml":  # small SRAMs refuse the model: refusal lines are cells too
        assert len(statuses) > 1


@pytest.mark.parametrize("name", ["hardwired.yaml", "systolic.yaml"])
def test_warm_fast_path_rows_equal_the_one_by_one_rows(name):
    job = _job(name)
    points = search.grid_points(job.space)
    fastpath.evaluate(job, points)  # warm every memo
    sample = points[:: max(1, len(points) // 12)]
    fast = fastpath.evaluate_points(job, sample)
    slow = evaluate_points_scalar(job, sample)
    for f, s in zip(fast, slow):
        assert (f["status"], f["reason"]) == (s["status"], s["reason"])
        if s["status"] == "ok":
            for m in METRICS:
                if s[m] is None:
                    assert f[m] is None
                else:
                    assert math.isclose(f[m], s[m], rel_tol=1e-9), (m, f[m], s[m])


def test_float_cells_are_the_floats_repr():
    values = np.array([0.1, 1e-300, 5e-324, 1.7976931348623157e308, -0.0, 123456789.12345679, 1e16,
                       float("inf"), 2.5])
    rng = np.random.default_rng(0)
    values = np.concatenate([values, rng.standard_normal(2000) * 10.0 ** rng.integers(-300, 300, 2000)])
    assert fastpath._reprs(values) == [repr(v) for v in values.tolist()]
    assert fastpath._reprs(np.array([])) == []


def test_done_ids_and_tail_reads_follow_appends_rewrites_and_torn_lines(tmp_path):
    path = tmp_path / "results.csv"
    path.write_text("point_id,x\na,1\nb,2\n", encoding="utf-8")
    assert runner.done_ids(path) == {"a", "b"}
    start = runner.resumed_at(path)
    with path.open("a", encoding="utf-8") as handle:
        handle.write("c,3\nd,4\ne,")  # a torn last line is not a row
    assert [r["point_id"] for r in runner.read_rows(path, start)] == ["c", "d"]
    assert runner.done_ids(path) == {"a", "b", "c", "d"}
    assert runner.read_rows(path, runner.resumed_at(path)) == []
    path.write_text("point_id,x\nz,9\n", encoding="utf-8")  # rewritten in place: read whole again
    assert runner.done_ids(path) == {"z"}
    replacement = tmp_path / "other.csv"
    replacement.write_text("point_id,x\nq,1\nr,2\ns,3\nt,4\nu,5\n", encoding="utf-8")
    replacement.replace(path)  # another file under the same name
    assert runner.done_ids(path) == {"q", "r", "s", "t", "u"}


def test_an_evolutionary_search_gets_every_generations_rows(tmp_path):
    job = _job("hardwired.yaml")
    path = tmp_path / "r.csv"
    grid = search.grid_points(job.space)
    first = runner.run(job, grid[:50], path, resume=True)
    second = runner.run(job, grid[40:90], path, resume=True)  # ten already there
    whole = {r["point_id"]: r for r in runner.read_rows(path)}
    assert [r["point_id"] for r in second] == fastpath.ids(grid[40:90])
    assert second == [whole[pid] for pid in fastpath.ids(grid[40:90])]
    assert first == [whole[pid] for pid in fastpath.ids(grid[:50])]
