"""Issue 20, eighth pass on NSGA-II (the systolic space): each replacement checked against the
per-point form it replaces, refusals included.

- ``SystolicBackend.allocate_columns`` (``common.offchip_allocate_columns``) against
  ``offchip_allocate`` on each point, and the fast path's rows with it against the rows of the
  traced per-group placement it replaces and against ``simulate``'s (refusal lines included);
- ``SystolicBackend.terms_each`` against ``terms`` for each mapping, bit for bit;
- ``runner.first_cells`` (the resume's id read) against ``csv_records``, and ``done_ids``
  against reading the whole file with the old rule;
- the fast path's per-graph op keys, leaf plans and column-view attributes against working
  them out afresh."""
from __future__ import annotations

import csv
import functools
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accelsim import pipeline
from accelsim.dse import fastpath, runner
from accelsim.errors import DoesNotFitError
from accelsim.graph import Attention, MatMul
from accelsim.hardware import common, load_hardware
from accelsim.hardware.base import Demand, Placement
from accelsim.hardware.systolic import BACKEND as SYSTOLIC
from accelsim.model.density import DensityProfile
from accelsim.model.lower import lower
from accelsim.model.spec import load_model
from accelsim.workload import Workload

# ---------------------------------------------------------------------------------------------
# placement over design points

_BYTES = st.one_of(st.floats(0, 1e12), st.sampled_from([0.0, 16.1e9, 2.15e9, 1e30]))


@settings(max_examples=300, deadline=None)
@given(weight=_BYTES, kv=_BYTES, state=_BYTES, data=st.data())
def test_offchip_columns_equal_placing_each_point(weight, kv, state, data):
    """Capacities below, at, one ulp around and above the need, NaN and infinite ones, and
    integers float64 cannot hold (the view reads them as rounded floats): per point, -1 exactly
    where ``offchip_allocate`` refuses and otherwise its placement, capacities as float arrays;
    None only where a capacity read as a float equals the need (the one case a rounded integer
    could compare otherwise), and then the caller places point by point."""
    resident = {"weight": weight, "kv_cache": kv, "state": state}
    need = sum(resident.values())
    around = [need, math.nextafter(need, math.inf), math.nextafter(need, -math.inf), need * 2, need / 2,
              math.nan, math.inf, 0.0]
    cap = st.one_of(st.sampled_from(around), st.floats(0, 1e13, allow_nan=False),
                    st.integers(2**53, 2**64).filter(lambda i: float(i) != i))
    n = data.draw(st.integers(1, 12))
    offchip = data.draw(st.lists(cap, min_size=n, max_size=n))
    onchip = data.draw(st.one_of(st.floats(1.0, 1e9), st.lists(st.floats(1.0, 1e9), min_size=n, max_size=n)))
    demand = Demand("g", resident)
    found = common.offchip_allocate_columns(demand, "hbm", np.array(offchip, dtype=object) if any(
        isinstance(c, int) for c in offchip) else np.array(offchip), "buffer", onchip, n)
    if found is None:
        assert any(float(c) == need for c in offchip)
        return
    codes, placements = found
    assert codes.shape == (n,) and len(placements) == 1
    column = placements[0]
    for i, c in enumerate(offchip):
        on = onchip[i] if isinstance(onchip, list) else onchip
        try:
            each = common.offchip_allocate(demand, "chip", "hbm", c, "buffer", on)
        except DoesNotFitError:
            assert codes[i] == -1, (need, c)
            continue
        assert codes[i] == 0, (need, c)
        assert column.level_of == each.level_of and column.footprint == each.footprint
        assert list(column.capacity) == list(each.capacity)
        for level, value in each.capacity.items():
            got = column.capacity[level][i]
            assert float(value) == got or (math.isnan(got) and math.isnan(float(value)))


_SPACE = """
name: eighth
base: tpu-v5e
workload: {{phase: decode, batch: {batch}, context: 2048}}
parameters:
  - key: memory.hbm.capacity
    values: [8 GB, 16 GB, 17 GB, 18.2 GB, 32 GB]
  - key: systolic.rows
    values: [32, 128, 256]
  - key: systolic.cols
    values: [64, 256]
  - key: systolic.arrays
    values: [1, 2, 8]
  - key: memory.buffer.capacity
    log: {{start: 1 MiB, stop: 512 MiB, num: 7}}
derived:
  compute.matrix.bf16: "2 * systolic.arrays * systolic.rows * systolic.cols * compute.clock"
  compute.matrix.int8: "4 * systolic.arrays * systolic.rows * systolic.cols * compute.clock"
objectives: {{area_mm2: min}}
"""


@pytest.mark.parametrize("batch", [1, 8])
def test_systolic_column_placement_equals_the_traced_placement(write, monkeypatch, batch):
    """HBM too small for the weights, for the weights and the cache, and large enough: every row
    the fast path writes with the column-wise placement -- refusal lines included -- equals the
    row of the traced per-group placement before it, bit for bit, and ``simulate``'s."""
    from accelsim.dse import metrics, search
    from accelsim.dse.evaluate import Job, evaluate_points_scalar
    from accelsim.dse.space import load_space
    from accelsim.hardware.systolic import SystolicBackend
    space = load_space(write("space.yaml", _SPACE.format(batch=batch)))
    job = Job(space, load_model("llama-3.1-8b"), Workload(**space.spec.workload.model_dump()))
    points = search.random_points(space, 80, 5)
    calls: list[Any] = []
    column_wise = SystolicBackend.allocate_columns
    monkeypatch.setattr(SystolicBackend, "allocate_columns",
                        lambda self, need, hw: calls.append(column_wise(self, need, hw)) or calls[-1])
    fast = fastpath.evaluate(job, points)
    assert calls and all(c is not None for c in calls) and fast.vectorised > 0
    monkeypatch.setattr(SystolicBackend, "allocate_columns", lambda self, need, hw: None)
    traced = fastpath.evaluate(job, points)
    fields = runner.columns(space.keys)
    assert fast.cells(fields) == traced.cells(fields)
    slow = evaluate_points_scalar(job, points)
    assert {r["status"] for r in slow} == {"ok", metrics.STATUS_NO_FIT}
    for f, s in zip(fast.records(), slow):
        assert (f["point_id"], f["status"], f["reason"]) == (s["point_id"], s["status"], s["reason"])
        if s["status"] == "ok":
            assert math.isclose(f["tokens_per_s"], s["tokens_per_s"], rel_tol=1e-9)
            assert math.isclose(f["joules_per_token"], s["joules_per_token"], rel_tol=1e-9)


# ---------------------------------------------------------------------------------------------
# a GEMM's or attention's dataflows costed together


@functools.lru_cache(maxsize=None)
def _ops(phase: str) -> tuple:
    hw = load_hardware("tpu-v5e")
    spec = pipeline.typed_model(load_model("llama-3.1-8b"), hw)
    workload = Workload(phase=phase, batch=3, prompt=96, context=200)
    graph = pipeline.chip_graph(lower(spec, workload), hw)
    seen: dict[tuple, Any] = {}
    for op, shape in zip(graph, fastpath._shape_keys(graph)):
        seen.setdefault(shape, op)
    arrays = [op for op in seen.values() if isinstance(op, (MatMul, Attention))]
    return tuple(arrays[:12]) + tuple(op for op in seen.values() if not isinstance(op, (MatMul, Attention)))[:2]


def _same(a: Any, b: Any) -> bool:
    """Equal values of equal types, arrays bit for bit (NaN equal to itself)."""
    if isinstance(a, dict) or isinstance(b, dict):
        return (type(a) is type(b) and list(a) == list(b)
                and all(_same(a[k], b[k]) for k in a))
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (type(a) is type(b) and a.dtype == b.dtype and a.shape == b.shape
                and a.tobytes() == b.tobytes())
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return type(a) is type(b) and a == b


_FLOWS = st.lists(st.sampled_from(["os", "ws", "is"]), min_size=1, max_size=3, unique=True)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(phase=st.sampled_from(["decode", "prefill"]), which=st.integers(0, 13), flows=_FLOWS,
       overlap=st.sampled_from(["none", "double_buffered"]), skipping=st.booleans(),
       density=st.sampled_from([None, 0.5, 0.03]), points=st.integers(0, 5), data=st.data())
def test_terms_each_equals_terms_per_mapping(phase, which, flows, overlap, skipping, density, points, data):
    """Every systolic GEMM and attention shape of a decode and a prefill step (and vector ops,
    which keep ``terms``), any dataflow list and overlap mode, dense and sparse inputs on
    zero-skipping datapaths, one chip (Python numbers) or design points (arrays of array sizes,
    buffers, bandwidths, clocks, capacities): the terms of each mapping equal ``terms``'s, every
    field bit for bit."""
    ops = _ops(phase)
    op = ops[which % len(ops)]
    base = load_hardware("tpu-v5e")
    hw = base.model_copy(update={
        "systolic": base.systolic.model_copy(update={"dataflows": flows, "overlap": overlap}),
        "compute": base.compute.model_copy(update={"zero_skipping": skipping})})
    p = dict(SYSTOLIC.params(hw))
    placement = SYSTOLIC.allocate(Demand("g", {"weight": 1e9, "kv_cache": 1e8, "state": 0.0}), hw)
    if points:
        def column(lo: float, hi: float, integer: bool = False) -> np.ndarray:
            values = data.draw(st.lists(st.integers(int(lo), int(hi)) if integer else st.floats(lo, hi),
                                        min_size=points, max_size=points))
            return np.asarray(values, dtype=float)
        p.update(rows=column(1, 300, True), cols=column(1, 300, True), arrays=column(1, 16, True),
                 buffer_capacity=column(1e3, 1e9), hbm_bw=column(1e9, 1e13), clock=column(1e8, 3e9),
                 zero_skipping=np.asarray(data.draw(st.lists(st.booleans(), min_size=points, max_size=points))))
        placement = Placement(placement.level_of, placement.footprint,
                              {"hbm": column(1e9, 1e11), "buffer": p["buffer_capacity"]})
    if density is not None:
        placement = Placement(placement.level_of, placement.footprint, placement.capacity,
                              density=DensityProfile(threshold=0.0, default=density, source="test"))
    mappings = SYSTOLIC.mappings(op, hw)
    together = SYSTOLIC.terms_each(op, mappings, hw, p, placement)
    assert len(together) == len(mappings)
    for mapping, t in zip(mappings, together):
        alone = SYSTOLIC.terms(op, mapping, hw, p, placement)
        for name in ("time_s", "compute_s", "memory_s", "bytes", "energy_j", "peak_flops", "overhead_s", "detail"):
            assert _same(getattr(t, name), getattr(alone, name)), (name, mapping, op)
        assert _same(t.energy_total, alone.energy_total)


def test_terms_each_defaults_to_terms_for_other_kinds():
    from accelsim.hardware.gpu import BACKEND as GPU
    hw = load_hardware("h100-sxm")
    op = next(o for o in _ops("decode") if isinstance(o, MatMul))
    p = GPU.cost_params(hw)
    placement = GPU.allocate(Demand("g", {"weight": 1e9, "kv_cache": 1e8, "state": 0.0}), hw)
    mappings = GPU.mappings(op, hw)[:5]
    for t, m in zip(GPU.terms_each(op, mappings, hw, p, placement), mappings):
        assert t == GPU.terms(op, m, hw, p, placement)


# ---------------------------------------------------------------------------------------------
# the resume's id read

_TEXT = st.lists(st.sampled_from(list('a1.5e-,"\n\r\x00 ') + ["ab12", "ok", "1e+300"]), max_size=40).map("".join)


def _records_or_refusal(fn, *args):
    try:
        return fn(*args)
    except csv.Error as err:
        return ("refused", str(err))


@settings(max_examples=500, deadline=None)
@given(text=_TEXT, newline=st.sampled_from(["\n", ""]))
def test_first_cells_equal_the_records_first_cells(text, newline):
    """Quotes, blank lines (None), lone carriage returns, NULs, empty first cells: each record's
    first cell as ``csv_records`` reads it, refused where it refuses."""
    want = _records_or_refusal(lambda: [r[0] if r else None for r in runner.csv_records(text, newline)])
    assert _records_or_refusal(runner.first_cells, text, newline) == want


def test_first_cells_refused_past_the_field_size_limit_as_the_records_are():
    old = csv.field_size_limit(8)
    try:
        for text in ("a,b\n" + "x" * 9 + "\n", "a,b\n" + "x" * 8 + "\n", "ab\n" + "y" * 7 + ",z\n"):
            want = _records_or_refusal(lambda t=text: [r[0] if r else None for r in runner.csv_records(t)])
            assert _records_or_refusal(runner.first_cells, text) == want
    finally:
        csv.field_size_limit(old)


def _old_done_ids(path: Path) -> set[str]:
    """``done_ids`` before this pass, reading the whole file every time."""
    data = path.read_bytes()
    text = data[: data.rfind(b"\n") + 1].decode("utf-8")
    return {line[0] for line in runner.csv_records(text, newline="")[1:] if line}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(parts=st.lists(_TEXT.filter(lambda t: '"' not in t), min_size=1, max_size=6))
def test_done_ids_across_appends_equal_reading_the_whole_file(tmp_path, parts):
    """A file appended to piece by piece (a blank first line, torn tails, blank records, CRs):
    after each append the ids equal the old rule on the whole file."""
    path = tmp_path / "r.csv"
    path.write_text("", encoding="utf-8")
    runner._DONE.pop(str(path.resolve()), None)
    for part in parts:
        with path.open("a", encoding="utf-8", newline="") as handle:
            handle.write(part)
        assert runner.done_ids(path) == _old_done_ids(path)


# ---------------------------------------------------------------------------------------------
# work kept across chunks


def test_cost_keys_equal_each_ops_key(write):
    """The op keys kept per graph (no density profile, no regions) and those worked out per
    chunk (a profile; a hardwired chip's regions): each op's shape key, density and region class."""
    from accelsim.hardware import hardwired
    for name, density in (("tpu-v5e", None), ("tpu-v5e", DensityProfile(threshold=0.0, default=0.25)),
                          ("hardwired-llama-3.1-8b", None)):
        hw = load_hardware(name)
        kind = hardwired.BACKEND if name.startswith("hardwired") else SYSTOLIC
        spec = pipeline.typed_model(load_model("llama-3.1-8b"), hw)
        workload = Workload(phase="decode", batch=2, context=300)
        graph = pipeline.chip_graph(lower(spec, workload), hw)
        placement = (kind.place(graph, hw, spec, workload) if kind is not SYSTOLIC else  # (16 GB: too small)
                     SYSTOLIC.allocate(Demand("g", {"weight": 1e9, "kv_cache": 1e8, "state": 0.0}), hw))
        if density is not None:
            placement = Placement(placement.level_of, placement.footprint, placement.capacity,
                                  placement.regions, density)
        region_class = fastpath._region_classes(kind, graph, placement)
        want = [(op, (*shape, common.op_density(op, placement), region_class.get(op.layer)))
                for op, shape in zip(graph, fastpath._shape_keys(graph))]
        for _ in range(2):  # worked out, then kept
            got = fastpath._cost_keys(kind, graph, placement)
            assert [k for _, k in got] == [k for _, k in want]
            assert all(a is b for (a, _), (b, _) in zip(got, want))


def test_leaf_plans_kept_equal_working_them_out():
    from accelsim.hardware.spec import HardwiredSpec, SystolicSpec
    for cls, section, keys in ((SystolicSpec, "memory", ["memory.buffer.capacity", "memory.hbm.bandwidth"]),
                               (SystolicSpec, "compute", ["compute.matrix.bf16", "compute.matrix.int8"]),
                               (SystolicSpec, "systolic", ["systolic.rows", "systolic.cols"]),
                               (SystolicSpec, "compute", ["compute.matrix", "compute.matrix.bf16"]),
                               (HardwiredSpec, "memory", ["memory"])):
        fresh = fastpath._plan_leaves(cls, section, keys)
        kept = fastpath._leaf_plan(cls, section, keys)
        assert kept == fresh and fastpath._leaf_plan(cls, section, list(keys)) is kept


def test_column_view_fields_read_once_and_kept():
    """A field read is kept on the view (read again without ``__getattr__``), methods see
    columns, and a field that differs in a non-numeric way is refused every time it is read."""
    from accelsim.dse.columns import Mixed, spec_columns
    hw = load_hardware("tpu-v5e")
    other = hw.model_copy(update={"systolic": hw.systolic.model_copy(update={"rows": 64, "overlap": "none"})})
    view = spec_columns(hw, {"systolic": ([hw.systolic, other.systolic], np.array([0, 1, 1]))}, 3)
    rows = view.systolic.rows
    assert rows.tolist() == [float(hw.systolic.rows), 64.0, 64.0]
    assert view.systolic.rows is rows and "rows" in vars(view.systolic)
    assert view.matrix_peak("bf16") == hw.matrix_peak("bf16")
    for _ in range(2):
        with pytest.raises(Mixed):
            view.systolic.overlap


# ---------------------------------------------------------------------------------------------
# the CSV cells of every metric made in one run


def _old_metric_cells(table, fields: list[str]) -> list[list[Any]]:
    """``_Table.cells`` before this pass: each metric's reprs made on its own."""
    from accelsim.dse import metrics
    names, columns = table._base(as_text=True)
    by_name: dict[str, list[Any]] = dict(zip(names, columns))
    by_name["status"] = table.status.tolist()
    by_name["reason"] = table.reason.tolist()
    ok = table.status == metrics.STATUS_OK
    for m in fastpath.METRICS:
        values = np.asarray(table.values[m], dtype=float)
        texts = np.array(fastpath._reprs(values), dtype=object)
        texts[~ok | np.isnan(values)] = ""
        by_name[m] = texts.tolist()
    for i, row in table.rows.items():
        for f in fields:
            by_name[f][i] = fastpath._text(row.get(f))
    return [by_name[f] for f in fields]


@functools.lru_cache(maxsize=None)
def _small_job() -> Any:
    from accelsim.dse.evaluate import Job
    from accelsim.dse.space import load_space
    space = load_space(Path(__file__).resolve().parent.parent / "hw_configs" / "spaces" / "systolic.yaml")
    return Job(space, load_model("llama-3.1-8b"), Workload(**space.spec.workload.model_dump()))


_METRIC = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0.0, -0.0, 1.0, 2.5e-7]))


def _hostile_table(job, n: int, data):
    """``n`` evaluated points whose metrics are then drawn hostile (NaN, infinities, -0.0, repeats)
    and some of which are marked as failed to fit."""
    from accelsim.dse import metrics, search
    points = search.random_points(job.space, n, data.draw(st.integers(0, 99)))
    table = fastpath.evaluate(job, points)
    for m in fastpath.METRICS:
        table.values[m] = np.asarray(data.draw(st.lists(_METRIC, min_size=n, max_size=n)), dtype=float)
    failed = data.draw(st.lists(st.booleans(), min_size=n, max_size=n))
    table.status = np.array([metrics.STATUS_NO_FIT if f else metrics.STATUS_OK for f in failed], dtype=object)
    return table


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 40), data=st.data())
def test_metric_cells_in_one_run_equal_each_metrics_cells(n, data):
    """Metric values with NaN, infinities, -0.0 and many repeats (the reprs of distinct values
    only, or of all), failed points (empty cells) and a point the scalar path wrote."""
    job = _small_job()
    table = _hostile_table(job, n, data)
    if data.draw(st.booleans()):
        table.scalar(job, 0)
    fields = runner.columns(job.space.keys)
    assert table.cells(fields) == _old_metric_cells(table, fields)


def _old_refuse_non_finite(table) -> None:
    """``_Table.refuse_non_finite`` before this pass: metric by metric."""
    from accelsim.dse import metrics
    ok = table.status == metrics.STATUS_OK
    for m in fastpath.METRICS:
        values = np.asarray(table.values[m], dtype=float)
        bad = ~np.isfinite(values) & ~(np.isnan(values) if m in fastpath.OPTIONAL_METRICS else False)
        for i in np.flatnonzero(ok & bad):
            if int(i) not in table.rows:
                table.status[i] = metrics.STATUS_INVALID
                table.reason[i] = "the step's figures would not be finite numbers"


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 30), data=st.data())
def test_non_finite_refusals_over_all_metrics_equal_each_metrics(n, data):
    """NaN (allowed only where a metric may have no value), infinities, failed points and a point
    the scalar path wrote: the same points refused, with the same status and reason."""
    import copy

    job = _small_job()
    table = _hostile_table(job, n, data)
    if data.draw(st.booleans()):
        table.rows[0] = {}
    old = copy.deepcopy(table)
    table.refuse_non_finite()
    _old_refuse_non_finite(old)
    assert table.status.tolist() == old.status.tolist() and table.reason.tolist() == old.reason.tolist()
