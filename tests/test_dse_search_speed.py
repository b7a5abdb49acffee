"""The search speed work (issue 20, second pass) changes how points are evaluated, never what
they give: sections validated leaf by leaf where they validate field by field, placement and the
whole-spec checks shared by the leaves they read, NSGA-II ranks from the dominance matrix, the
garbage collector held off per chunk.  Each is checked here against the scalar path it replaces."""
from __future__ import annotations

import gc
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accelsim.dse import fastpath, pareto, runner, search
from accelsim.dse.evaluate import Job, evaluate_points_scalar
from accelsim.dse.space import load_space
from accelsim.hardware.spec import MemoryLevel, SystolicMemory
from accelsim.model.spec import load_model
from accelsim.workload import Workload

METRICS = ("tokens_per_s_per_user", "tokens_per_s", "latency_s", "joules_per_token", "power_w",
           "area_mm2", "die_mm2", "dies", "reticle_limited", "usd_per_mtoken", "breakeven_mtokens")
MODEL = load_model("llama-3.1-8b")


def _same_rows(fast: list[dict], slow: list[dict]) -> None:
    assert len(fast) == len(slow)
    for f, s in zip(fast, slow):
        # (a row read back from CSV has no reason as an empty cell: None)
        assert (f["point_id"], f["status"], f["reason"] or "") == (s["point_id"], s["status"], s["reason"]), (f, s)
        if s["status"] != "ok":
            continue
        for m in METRICS:
            if s[m] is None:
                assert f[m] is None, m
            else:
                assert math.isclose(f[m], s[m], rel_tol=1e-9), (m, f[m], s[m])


def _space(write, text: str) -> Job:
    space = load_space(write("space.yaml", text))
    return Job(space, MODEL, Workload(**space.spec.workload.model_dump()))


# Ranges that run past the bounds the config types allow: negative and zero sizes, a bandwidth
# beyond the largest quantity (1e30), MAC counts past 2**40 -- each refused by the field alone.
_SIZES = st.sampled_from(["-64 MiB", "0 MiB", "1 MiB", "16 MiB", "256 MiB", "4 GiB"])
_BANDWIDTHS = st.sampled_from(["-1 TB/s", "0.5 TB/s", "3.2 TB/s", "1e18 TB/s", "1e20 TB/s"])


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(buffer=st.tuples(_SIZES, _SIZES), bandwidth=st.tuples(_BANDWIDTHS, _BANDWIDTHS),
       seed=st.integers(0, 2**16))
def test_leaf_validation_refuses_exactly_what_whole_validation_refuses(write, buffer, bandwidth, seed):
    """Random systolic points over ranges with out-of-bounds values: the fast path (memory
    sections built leaf by leaf from one validated section) gives every point the row the
    scalar path gives it, refusal line included."""
    job = _space(write, f"""
name: leaves
base: tpu-v5e
set:
  memory.hbm.capacity: 32 GB
workload: {{phase: decode, batch: 8, context: 2048}}
parameters:
  - key: memory.buffer.capacity
    linear: {{start: {buffer[0]}, stop: {buffer[1]}, num: 5}}
  - key: memory.hbm.bandwidth
    linear: {{start: {bandwidth[0]}, stop: {bandwidth[1]}, num: 5}}
  - key: systolic.arrays
    values: [1, 4]
objectives: {{tokens_per_s: max}}
""")
    points = search.random_points(job.space, 10, seed)
    _same_rows(fastpath.evaluate_points(job, points), evaluate_points_scalar(job, points))


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(macs=st.sampled_from([(1, 8388608), (4194304, 4398046511104), (-5, 4194304)]),
       sram=st.tuples(_SIZES, _SIZES), seed=st.integers(0, 2**16))
def test_leaf_validation_on_integer_and_size_leaves(write, macs, sram, seed):
    """The hardwired chip: an integer leaf (MACs, at most 2**40) and a size leaf, with a derived
    peak (its section is written and validated whole) and the peak check across sections."""
    job = _space(write, f"""
name: leaves-hardwired
base: hardwired-llama-3.1-8b
workload: {{phase: decode, batch: 1, context: 2048}}
parameters:
  - key: hardwired.macs
    linear: {{start: {macs[0]}, stop: {macs[1]}, num: 9, integer: true}}
  - key: memory.sram.capacity
    linear: {{start: {sram[0]}, stop: {sram[1]}, num: 9}}
derived:
  compute.matrix.int4: "2 * hardwired.macs * compute.clock"
objectives: {{area_mm2: min}}
""")
    points = search.random_points(job.space, 10, seed)
    _same_rows(fastpath.evaluate_points(job, points), evaluate_points_scalar(job, points))


def test_a_refused_leaf_is_refused_with_the_scalar_line(write):
    job = _space(write, """
name: one-bad-leaf
base: tpu-v5e
set:
  memory.hbm.capacity: 32 GB
parameters:
  - key: memory.buffer.capacity
    values: [64 MiB, -8 MiB, 32 MiB]
objectives: {tokens_per_s: max}
""")
    points = search.grid_points(job.space)
    fast, slow = fastpath.evaluate_points(job, points), evaluate_points_scalar(job, points)
    _same_rows(fast, slow)
    assert [r["status"] for r in fast] == ["ok", "invalid", "ok"]
    assert "memory.buffer.capacity" in fast[1]["reason"] and "must be > 0" in fast[1]["reason"]


def test_leaf_plan_only_for_sections_that_validate_field_by_field():
    from accelsim.hardware.spec import GpuSpec, HardwiredSpec, SystolicSpec
    plan = fastpath._leaf_plan(SystolicSpec, "memory", ["memory.buffer.capacity", "memory.hbm.bandwidth"])
    assert plan is not None and [p[1] for p in plan] == [("buffer", "capacity"), ("hbm", "bandwidth")]
    # an entry of a dict field (compute.matrix.bf16): validated as one value of the dict
    # (issue 20, third pass: derived peaks are written there); a whole section: validated whole
    entry = fastpath._leaf_plan(SystolicSpec, "compute", ["compute.matrix.bf16"])
    assert entry is not None and entry[0][1] == ("matrix", "bf16")
    # a key written inside another one's value: the document's order decides, so validated whole
    assert fastpath._leaf_plan(SystolicSpec, "compute", ["compute.matrix", "compute.matrix.bf16"]) is None
    assert fastpath._leaf_plan(HardwiredSpec, "memory", ["memory"]) is None
    # PowerSpec checks static against TDP (a model validator): never leaf by leaf
    assert fastpath._leaf_plan(GpuSpec, "power", ["power.static"]) is None


@pytest.mark.parametrize("name", ["hardwired.yaml", "systolic.yaml"])
def test_random_and_nsga2_rows_equal_one_by_one_simulate(tmp_path, name):
    """Rows as the runner writes and reads them back, for a random search and an NSGA-II run,
    equal one-by-one evaluation (``simulate`` per point) on a sample."""
    space = load_space(f"hw_configs/spaces/{name}")
    job = Job(space, MODEL, Workload(**space.spec.workload.model_dump()))
    points = search.random_points(space, 300, 11)
    rows = runner.run(job, points, tmp_path / "random.csv")
    sample = slice(0, None, 25)
    _same_rows(rows[sample], evaluate_points_scalar(job, points[sample]))

    asked: dict[str, dict] = {}  # point id -> the point NSGA-II asked for

    def evaluate(pts):
        rows = runner.run(job, pts, tmp_path / "nsga.csv", resume=True)
        asked.update((r["point_id"], p) for p, r in zip(pts, rows))
        return rows
    evolved = search.nsga2(space, evaluate, space.spec.objectives, space.constraints, 96, 5, population=16)
    chosen = evolved[::8]
    assert len(chosen) >= 5
    _same_rows(chosen, evaluate_points_scalar(job, [asked[r["point_id"]] for r in chosen]))


_OBJECTIVE = st.one_of(st.integers(-3, 3).map(float), st.sampled_from([math.inf, -math.inf, math.nan]))


@settings(max_examples=120, deadline=None)
@given(st.integers(1, 40).flatmap(lambda n: st.integers(1, 4).flatmap(
    lambda k: st.lists(st.lists(_OBJECTIVE, min_size=k, max_size=k), min_size=n, max_size=n))))
def test_ranks_by_dominance_matrix_equal_peeling_fronts(rows):
    values = np.array(rows, dtype=float)
    peeled = np.full(len(values), -1)
    left, front = np.arange(len(values)), 0
    while left.size:
        mask = pareto.pareto_mask(values[left])
        peeled[left[mask]] = front
        left, front = left[~mask], front + 1
    assert pareto.non_dominated_ranks(values).tolist() == peeled.tolist()


def test_traced_spec_records_the_leaves_a_function_reads():
    space = load_space("hw_configs/spaces/systolic.yaml")
    memory = space.hardware(search.grid_points(space)[0]).memory
    assert isinstance(memory, SystolicMemory)
    read: set = set()
    traced = fastpath._traced(memory, ("memory",), read)
    assert isinstance(traced.hbm, MemoryLevel)  # isinstance sees the real class
    assert "hbm" in type(traced).model_fields
    assert traced.buffer.capacity == memory.buffer.capacity
    assert read == {(("memory", "hbm"), "t"), (("memory", "buffer"), "t"),
                    (("memory", "buffer", "capacity"), "v")}
    traced.hbm.model_dump()  # a method: the whole object it is called on
    assert (("memory", "hbm"), "id") in read


def test_float_cells_with_repeats_are_each_floats_repr():
    values = np.array([1.0, -0.0, 0.0, 1.0, 0.1 + 0.2, 0.1 + 0.2, 5e-324, 1e300, 1e300, 2.5, 1.0])
    assert fastpath._reprs(values) == [repr(v) for v in values.tolist()]


def test_gc_is_held_off_only_inside_a_chunk():
    assert gc.isenabled()
    with fastpath.gc_paused():
        assert not gc.isenabled()
        with fastpath.gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()
    gc.disable()
    try:
        with fastpath.gc_paused():
            pass
        assert not gc.isenabled()  # left as the caller had it
    finally:
        gc.enable()
