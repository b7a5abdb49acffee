"""Derived keys evaluated column-wise (``dse.derived``) equal, point for point, what the scalar
rule (``Space.document``) writes, and a point the scalar rule refuses is refused with the same
line, on random spaces whose expressions divide by zero, take roots and logarithms of negative
numbers, overflow, and chain one derived key into another."""
from __future__ import annotations

import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accelsim.dse import derived, fastpath, search
from accelsim.dse.evaluate import Job, evaluate_points_scalar
from accelsim.dse.space import _lookup, load_space
from accelsim.errors import ConfigError
from accelsim.model.spec import load_model
from accelsim.workload import Workload

# parameter key -> the ranges/values it may take in a random space (zero and negative included)
PARAMETERS = {
    "hardwired.macs": ["values: [0, -3, 1048576, 4194304]", "log: {start: 1024, stop: 8388608, num: 9, integer: true}"],
    "compute.clock": ["linear: {start: -0.5 GHz, stop: 1.5 GHz, num: 5}", "values: [0 GHz, 1 GHz, 2.5 GHz]"],
    "memory.sram.capacity": ["linear: {start: 64 MiB, stop: 512 MiB, num: 29}",
                             "values: [0 MiB, 128 MiB, 1e30 B]"],
}
# derived key -> (what a base value there looks like); a quantity, an int and a float target
TARGETS = ["compute.matrix.int4", "compute.vector", "hardwired.stage_latency", "efficiency.memory",
           "hardwired.macs"]
CONSTANTS = ["power.tdp", "memory.sram.bandwidth", "2", "0", "1e300", "0.5", "-1"]


def _expressions(names: list[str]) -> st.SearchStrategy[str]:
    leaves = st.sampled_from(names + CONSTANTS)

    def extend(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        return st.one_of(
            st.tuples(inner, st.sampled_from(["+", "-", "*", "/", "**"]), inner).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
            inner.map(lambda e: f"-{e}"),
            st.tuples(st.sampled_from(["min", "max"]), st.lists(inner, min_size=2, max_size=3)).map(
                lambda t: f"{t[0]}({', '.join(t[1])})"),
            st.tuples(st.sampled_from(["ceil", "sqrt", "log2"]), inner).map(lambda t: f"{t[0]}({t[1]})"))
    return st.recursive(leaves, extend, max_leaves=6)


@st.composite
def _spaces(draw) -> str:
    keys = draw(st.lists(st.sampled_from(sorted(PARAMETERS)), min_size=1, max_size=3, unique=True))
    targets = draw(st.lists(st.sampled_from([t for t in TARGETS if t not in keys]), min_size=1, max_size=3,
                            unique=True))
    lines = ["name: derived-random", "base: hardwired-llama-3.1-8b", "parameters:"]
    for key in keys:
        lines += [f"  - key: {key}", f"    {draw(st.sampled_from(PARAMETERS[key]))}"]
    lines.append("derived:")
    for i, target in enumerate(targets):
        # a later derived key may read an earlier one (chained), as the document holds it
        expr = draw(_expressions(keys + targets[:i]))
        lines.append(f"  {target}: \"{expr}\"")
    lines.append("objectives: {area_mm2: min}")
    return "\n".join(lines) + "\n"


def _scalar(space, point):
    """What ``Space.document`` writes at each derived key, or the line it refuses the point with."""
    try:
        document = space.document(point)
    except ConfigError as err:
        return None, err.one_line()
    return {k: _lookup(document, k, "", "") for k in space.spec.derived}, None


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b and math.copysign(1, a) == math.copysign(1, b) or (math.isnan(a) and math.isnan(b))
    return type(a) is type(b) and a == b


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(text=_spaces(), seed=st.integers(0, 2**16))
def test_column_wise_derived_keys_equal_the_per_point_rule(write, text, seed):
    space = load_space(write("space.yaml", text))
    points = search.random_points(space, 12, seed)
    columns = derived.derived_values(space, points)
    for i, point in enumerate(points):
        values, error = _scalar(space, point)
        got_error = columns.errors[i]
        assert (got_error.one_line() if got_error else None) == error, (text, point)
        if values is not None:
            got = columns.point(i)
            assert all(_same(got[k], values[k]) for k in values), (text, point, got, values)


def test_hand_worked_derived_columns_and_refusals(write):
    space = load_space(write("space.yaml", """
name: hand
base: hardwired-llama-3.1-8b
parameters:
  - key: compute.clock
    values: [0 GHz, 1 GHz, 2 GHz]
derived:
  compute.matrix.int4: "2 * hardwired.macs * compute.clock"
  compute.vector: "compute.matrix.int4 / (compute.clock - 1e9)"
objectives: {area_mm2: min}
"""))
    columns = derived.derived_values(space, search.grid_points(space))
    # 2 x 4,194,304 MACs x 2 GHz, then that over 1 GHz: written with the base unit
    assert columns.point(2) == {"compute.matrix.int4": "1.6777216e+16 FLOPS", "compute.vector": "16777216.0 FLOPS"}
    assert columns.errors[0] is None and columns.point(0)["compute.vector"] == "-0.0 FLOPS"
    assert "cannot be evaluated at this point (float division by zero)" in columns.errors[1].one_line()
    assert columns.errors[1].one_line() == _scalar(space, {"compute.clock": "1 GHz"})[1]


def test_fast_path_refuses_a_point_its_derived_key_refuses(write):
    """A derived key that cannot be evaluated at some points: those points are refused with the
    scalar path's line, the others costed (the fast path used to stop the whole sweep there)."""
    space = load_space(write("space.yaml", """
name: refuse
base: hardwired-llama-3.1-8b
workload: {phase: decode, batch: 1, context: 2048}
parameters:
  - key: hardwired.macs
    values: [2097152, 4194304]
  - key: compute.clock
    values: [1 GHz, 0.5 GHz]
derived:
  compute.matrix.int4: "2 * hardwired.macs * compute.clock * (compute.clock - 1e9) / (compute.clock - 1e9)"
objectives: {area_mm2: min}
"""))
    job = Job(space, load_model("llama-3.1-8b"), Workload(**space.spec.workload.model_dump()))
    points = search.grid_points(space)
    fast, slow = fastpath.evaluate_points(job, points), evaluate_points_scalar(job, points)
    assert [r["status"] for r in fast] == [r["status"] for r in slow] == ["invalid", "ok", "invalid", "ok"]
    assert [r["reason"] for r in fast] == [r["reason"] for r in slow]
    assert "float division by zero" in fast[0]["reason"]
    for f, s in zip(fast, slow):
        if s["status"] == "ok":
            assert math.isclose(f["tokens_per_s_per_user"], s["tokens_per_s_per_user"], rel_tol=1e-9)


def test_dict_entry_leaves_refuse_as_whole_validation(write):
    """A parameter written into a dict field's entry (compute.matrix.bf16) is validated as one
    entry of the dict: the rows, refusals included (negative, zero, beyond the largest quantity,
    and the kind's peak check across sections), equal one-by-one evaluation."""
    space = load_space(write("space.yaml", """
name: entries
base: tpu-v5e
set:
  memory.hbm.capacity: 32 GB
workload: {phase: decode, batch: 8, context: 2048}
parameters:
  - key: compute.matrix.bf16
    values: [-1 TFLOPS, 0 TFLOPS, 197 TFLOPS, 1e40 TFLOPS, 394 TFLOPS]
  - key: compute.clock
    values: [1.5 GHz, 3 GHz]
objectives: {tokens_per_s: max}
"""))
    job = Job(space, load_model("llama-3.1-8b"), Workload(**space.spec.workload.model_dump()))
    points = search.grid_points(space)
    fast, slow = fastpath.evaluate_points(job, points), evaluate_points_scalar(job, points)
    assert [(r["status"], r["reason"]) for r in fast] == [(r["status"], r["reason"]) for r in slow]
    assert {r["status"] for r in fast} == {"ok", "invalid"}
