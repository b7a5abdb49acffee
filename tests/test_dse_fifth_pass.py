"""Issue 20, fifth pass on random search and NSGA-II: each change is checked against the
definition it replaces (the writer's own CSV, the quantity parser, pydantic's leaf validation),
including the inputs that are refused."""
from __future__ import annotations

import csv
import io
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from accelsim.config import units
from accelsim.dse import fastpath, runner
from accelsim.hardware import load_hardware
from accelsim.hardware.spec import HardwiredSpec, SystolicSpec

_CELL = st.one_of(st.text(alphabet=st.sampled_from(list('ab ,"\n\r\t\x00é1.e-')), max_size=6),
                  st.floats(allow_nan=True), st.integers(), st.none(), st.booleans())


def _writer(columns: list[list]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(zip(*columns))
    return buffer.getvalue()


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 5).flatmap(lambda k: st.integers(0, 6).flatmap(
    lambda n: st.lists(st.lists(_CELL, min_size=n, max_size=n), min_size=k, max_size=k))))
def test_csv_lines_equal_the_csv_writer(columns):
    """Commas, quotes, newlines (quoted), carriage returns and NULs (not quoted with "\\n" lines),
    empty cells, a lone empty field, and cells that are not text."""
    assert runner.csv_lines(columns) == _writer(columns)


_UNITS = [(dim, unit) for dim in (units.SIZE, units.FREQUENCY, units.THROUGHPUT, units.BANDWIDTH)
          for unit in ("B", "MiB", "GHz", "Hz", "FLOP/s", "TB/s", "B/s", "EB")]


@settings(max_examples=300, deadline=None)
@given(number=st.one_of(st.floats(), st.integers(-10**20, 10**20)), pair=st.sampled_from(_UNITS))
def test_quantity_text_records_what_the_parser_gives(number, pair):
    """The recorded value of a written quantity equals parsing its text afresh; a text the
    parser refuses (a unit of another dimension, inf, NaN, an overflowing product) is refused
    the same way, with the same line."""
    dim, unit = pair
    units._PARSED.clear()
    text = units.quantity_text(number, unit, dim)
    assert text == f"{number!r} {unit}"
    try:
        fresh = units._parse_quantity(text, dim)
    except units.UnitError as err:
        with pytest.raises(units.UnitError) as caught:
            units.parse_quantity(text, dim)
        assert str(caught.value) == str(err)
        return
    got = units.parse_quantity(text, dim)
    assert got == fresh and math.copysign(1, got) == math.copysign(1, fresh)


_VALUES = st.one_of(st.floats(), st.integers(-2**41, 2**41), st.booleans(), st.none(),
                    st.sampled_from(["64 MiB", "-1 MiB", "0 B", "1e40 B", "1.5 GHz", "3 TB/s", "x",
                                     "2e15 FLOP/s", "1 W"]))


@settings(max_examples=200, deadline=None)
@given(values=st.lists(_VALUES, min_size=3, max_size=3))
def test_substitution_equals_pydantic_leaf_validation(values):
    """A section with the point's values substituted (each leaf validated by its model's own
    validator) equals ``model_copy`` of ``model_validate``'s leaf values, and is refused (None)
    exactly where a leaf's ``model_validate`` refuses."""
    plans = {"memory": ["memory.sram.capacity", "memory.sram.bandwidth"],
             "compute": ["compute.clock"]}
    base = _hardwired()
    point = dict(zip([*plans["memory"], *plans["compute"]], values))
    for section, keys in plans.items():
        plan = fastpath._leaf_plan(HardwiredSpec, section, keys)
        assert plan is not None
        got = fastpath._substitution(plan)(getattr(base, section), point, None)
        try:
            leaves = [leaf.model_validate({"value": point[key]}).value for key, _, leaf in plan]
        except ValidationError:
            assert got is None
            continue
        expected = getattr(base, section)
        for (_, parts, _), value in zip(plan, leaves):
            expected = _copy_at(expected, parts, value)
        assert got == expected


def test_substitution_takes_derived_values_before_the_points():
    plan = fastpath._leaf_plan(SystolicSpec, "compute", ["compute.matrix.bf16"])
    assert plan is not None
    base = _systolic().compute
    got = fastpath._substitution(plan)(base, {"compute.matrix.bf16": "1 W"}, {"compute.matrix.bf16": "2e15 FLOP/s"})
    assert got.matrix["bf16"] == 2e15


def _copy_at(model, parts: tuple[str, ...], value):
    """``model`` with ``value`` at ``parts``, by pydantic's ``model_copy``."""
    if len(parts) == 1:
        return model.model_copy(update={parts[0]: value})
    return model.model_copy(update={parts[0]: _copy_at(getattr(model, parts[0]), parts[1:], value)})


def _hardwired() -> HardwiredSpec:
    return load_hardware("hardwired-llama-3.1-8b")


def _systolic() -> SystolicSpec:
    return load_hardware("tpu-v5e")


_METRICS = ("tokens_per_s_per_user", "tokens_per_s", "latency_s", "joules_per_token", "power_w",
            "area_mm2", "die_mm2", "dies", "reticle_limited", "usd_per_mtoken", "breakeven_mtokens")


@pytest.mark.parametrize(("batch", "dram", "rule"), [(1, False, "proportional"), (4, True, "uniform"),
                                                     (8, True, "proportional")])
def test_column_placement_equals_placing_each_point(write, monkeypatch, batch, dram, rule):
    """Hardwired points placed column-wise (``Backend.allocate_columns``): KV cache in SRAM, in
    DRAM or refused, microbatched decode (a second demand), both region rules -- every row, the
    refusal line included, is the one ``simulate`` gives the point.  (A MAC count whose products
    pass 2**53 takes the point-by-point placement: ``test_leaf_validation_on_integer_and_size_leaves``.)"""
    from accelsim.dse import metrics, search
    from accelsim.dse.evaluate import Job, evaluate_points_scalar
    from accelsim.dse.space import load_space
    from accelsim.hardware import hardwired
    from accelsim.model.spec import load_model
    from accelsim.workload import Workload
    dram_set = ("  memory.dram: {capacity: 1 GiB, bandwidth: 1 TB/s, energy: 10 pJ/B, source: test}\n"
                if dram else "")
    dram_key = ("  - key: memory.dram.capacity\n    linear: {start: 8 MiB, stop: 8 GiB, num: 9}\n"
                if dram else "")
    space = load_space(write("space.yaml", f"""
name: columns
base: hardwired-llama-3.1-8b
set:
  hardwired.region_rule: {rule}
{dram_set}workload: {{phase: decode, batch: {batch}, context: 2048}}
parameters:
  - key: hardwired.macs
    log: {{start: 1024, stop: 33554432, num: 9, integer: true}}
  - key: memory.sram.capacity
    linear: {{start: 1 MiB, stop: 512 MiB, num: 9}}
{dram_key}derived:
  compute.matrix.int4: "2 * hardwired.macs * compute.clock"
objectives: {{area_mm2: min}}
"""))
    job = Job(space, load_model("llama-3.1-8b"), Workload(**space.spec.workload.model_dump()))
    points = search.random_points(space, 60, 3)
    placed = []
    column_wise = hardwired._allocate_columns
    monkeypatch.setattr(hardwired, "_allocate_columns",
                        lambda need, hw: placed.append(column_wise(need, hw)) or placed[-1])
    table = fastpath.evaluate(job, points)
    assert placed and all(p is not None for p in placed)
    fast, slow = table.records(), evaluate_points_scalar(job, points)
    assert {r["status"] for r in slow} == {"ok", metrics.STATUS_NO_FIT}
    assert table.vectorised > 0
    for f, s in zip(fast, slow):
        assert (f["point_id"], f["status"], f["reason"]) == (s["point_id"], s["status"], s["reason"])
        if s["status"] == "ok":
            for m in _METRICS:
                assert (f[m] is None) == (s[m] is None), m
                assert s[m] is None or math.isclose(f[m], s[m], rel_tol=1e-9), (m, f[m], s[m])


@settings(max_examples=30, deadline=None)
@given(n=st.integers(4, 300), sizes=st.lists(st.one_of(st.integers(1, 40), st.sampled_from([2**31 + 7, 3 * 2**30])),
                                             min_size=1, max_size=6),
       seed=st.integers(0, 2**32), held=st.booleans(), data=st.data())
def test_offspring_from_raw_words_equal_the_generator_calls(n, sizes, seed, held, data):
    """The children drawn from one block of raw words equal the three generator calls per child,
    and leave the generator in the same state (word position and half-word buffer), over
    several generations: any population size, genes of one value (no draw), bounds where
    Lemire's rule redraws often (the raw form declines and the calls are made), tied ranks and
    crowding distances with infinities and NaNs; a half-word held from an earlier draw."""
    import numpy as np

    from accelsim.dse import search
    genomes = np.random.default_rng(seed).integers(0, 3, size=(n, len(sizes)))
    ranks = data.draw(st.lists(st.integers(0, 3).map(float), min_size=n, max_size=n))
    crowd = data.draw(st.lists(st.sampled_from([0.0, 0.5, 1.5, math.inf, math.nan]), min_size=n, max_size=n))
    ours, theirs = np.random.default_rng(seed), np.random.default_rng(seed)
    if held:  # leave a high half in both buffers
        ours.integers(5, size=1)
        theirs.integers(5, size=1)
    # the raw form is in use where this numpy consumes words as it reads them (numpy 2:
    # ``test_raw_draws_are_used_with_numpy_2``); elsewhere the calls are made, checked the same
    small = all(s < 2**20 for s in sizes) and search._raw_draws_match()
    for _ in range(3):
        if small:
            state = ours.bit_generator.state
            assert search._offspring_from_raw(genomes, np.array(ranks), np.array(crowd), np.array(sizes),
                                              ours) is not None
            ours.bit_generator.state = state
        now = search._offspring(genomes, np.array(ranks), np.array(crowd), np.array(sizes), ours)
        before = search._offspring_by_calls(genomes, np.array(ranks), np.array(crowd), np.array(sizes), theirs)
        assert now.tolist() == before.tolist()
        assert ours.bit_generator.state == theirs.bit_generator.state
        genomes = now


@settings(max_examples=150, deadline=None)
@given(data=st.data(), n=st.integers(1, 40), m=st.integers(1, 4))
def test_crowding_by_rank_equals_each_rank_alone(data, n, m):
    """Crowding distances of all ranks at once equal ``crowding_distance`` on each rank of more
    than two points (infinity for the others), bit for bit: tied values and ranks, NaN and
    infinite objectives, ranks of one value."""
    import numpy as np

    from accelsim.dse import pareto
    cell = st.sampled_from([0.0, 1.0, 2.0, -1.5, 3.25, math.inf, -math.inf, math.nan])
    values = np.array(data.draw(st.lists(st.lists(cell, min_size=m, max_size=m), min_size=n, max_size=n)))
    ranks = np.array(data.draw(st.lists(st.integers(0, 4).map(float), min_size=n, max_size=n)))
    expected = np.full(n, np.inf)
    distinct, counts = np.unique(ranks, return_counts=True)
    with np.errstate(all="ignore"):
        for r in distinct[counts > 2].tolist():
            members = np.flatnonzero(ranks == r)
            expected[members] = pareto.crowding_distance(values[members])
        got = pareto.crowding_by_rank(values, ranks)
    assert np.array_equal(got, expected, equal_nan=True)
    assert np.array_equal(np.signbit(got), np.signbit(expected))


@settings(max_examples=200, deadline=None)
@given(values=st.one_of(
    st.lists(st.sampled_from([0.0, -0.0, 1.5, math.inf, math.nan, 2.0]), min_size=1, max_size=30),
    st.lists(st.integers(-3, 3) | st.just(2**80), min_size=1, max_size=30),
    st.lists(st.sampled_from(["1 B", "2 B", "x", ""]), min_size=1, max_size=30),
    st.lists(st.sampled_from([1, 1.0, True, "1", 0, 0.0, False]), min_size=1, max_size=30)),
)
def test_codes_of_few_values_equal_pandas_and_the_general_rule(values):
    """Distinct values and codes of a small chunk (hashed in Python) equal pandas' factorize and
    the mixed-type rule (1, 1.0 and True apart; NaN objects apart unless one object; 0.0 and
    -0.0 one value, the first seen kept), value and type."""
    small = fastpath._codes(values)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(fastpath, "_FEW", 0)
        by_pandas = fastpath._codes(values)
    distinct, index = fastpath._codes([*values, object()])  # a mixed list: the general rule
    for other in (by_pandas, (distinct[:-1], index[:-1])):
        assert [(type(v), repr(v)) for v in small[0]] == [(type(v), repr(v)) for v in other[0]]
        assert small[1].tolist() == other[1].tolist()


@pytest.mark.parametrize("expr", ["197e12", "1 / 0"])
def test_a_section_written_by_a_derived_key_that_reads_no_parameter(write, expr):
    """A derived key with no parameter in its expression: its section depends on no key, so every
    member shares one value (or one refusal), as one by one."""
    from accelsim.dse import search
    from accelsim.dse.evaluate import Job, evaluate_points_scalar
    from accelsim.dse.space import load_space
    from accelsim.model.spec import load_model
    from accelsim.workload import Workload
    space = load_space(write("space.yaml", f"""
name: constant
base: tpu-v5e
objectives: {{tokens_per_s: max}}
parameters:
  - {{key: systolic.rows, values: [128, 64]}}
derived:
  compute.matrix.bf16: "{expr}"
"""))
    job = Job(space, load_model("llama-3.1-8b"), Workload(**space.spec.workload.model_dump()))
    points = search.grid_points(space)
    fast, slow = fastpath.evaluate_points(job, points), evaluate_points_scalar(job, points)
    assert [(r["status"], r["reason"]) for r in fast] == [(r["status"], r["reason"]) for r in slow]
    for f, s in zip(fast, slow):
        assert (f.get("tokens_per_s") is None) == (s.get("tokens_per_s") is None)
        assert s.get("tokens_per_s") is None or math.isclose(f["tokens_per_s"], s["tokens_per_s"], rel_tol=1e-9)


def test_raw_draws_are_used_with_numpy_2():
    """numpy 2's generator consumes raw words as ``_offspring_from_raw`` reads them, so NSGA-II
    draws a generation's children from one block there (other versions make the calls)."""
    import numpy as np

    from accelsim.dse import search
    if int(np.__version__.split(".")[0]) < 2:
        pytest.skip(f"numpy {np.__version__}: the generator calls are made")
    assert search._raw_draws_match()
