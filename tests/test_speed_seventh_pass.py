"""Issue 20, seventh pass: the mapper's per-op rows, made once per (op class, cost) and shared by
the steps whose op names and classes are the same, equal the op-by-op renaming they replace,
field by field, whatever the order of classes, repeats and costs (hypothesis) and on real steps
of every format, batch and context."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from accelsim import Workload, api
from accelsim.hardware.base import OpCost
from accelsim.sim import mapper


def _cost(n: int) -> OpCost:
    return OpCost(op=f"shape{n}", kind="matmul", layer=None, time_s=1e-6 * (n + 1), compute_s=0.0,
                  memory_s={"hbm": 1e-7 * n}, bytes={"hbm": float(n)}, energy_j={"hbm": 1e-9 * n},
                  flops=float(n), peak_flops=1.0, bound="memory", mapping=f"m{n}")


def _renamed_loop(best, index, labels):
    """The mapper's rows up to the sixth pass: one fresh rename per op."""
    return [mapper._renamed(best[i], name, layer) for (name, layer), i in zip(labels, index)]


def _fields(rows):
    return [(type(r), r.__dict__) for r in rows]


steps = st.integers(min_value=1, max_value=6).flatmap(lambda classes: st.tuples(
    st.just(classes),
    st.lists(st.integers(min_value=0, max_value=classes - 1), min_size=classes, max_size=40),
    st.lists(st.lists(st.integers(min_value=0, max_value=7), min_size=classes, max_size=classes),
             min_size=1, max_size=6)))


@settings(max_examples=200, deadline=None)
@given(steps, st.sampled_from([None, 0, 3]))
def test_rows_equal_the_op_by_op_renaming(step, layer):
    classes, index, draws = step
    index = list(range(classes)) + index  # every class has an op (as a graph's classes do)
    labels = [(f"op{n}", layer if layer is None else layer + n % 2) for n in range(len(index))]
    pool = [_cost(n) for n in range(8)]
    for draw in draws:  # steps with the same names and classes, costs repeating or not
        best = [pool[k] for k in draw]
        got = mapper._rows(best, index, labels)
        assert _fields(got) == _fields(_renamed_loop(best, index, labels))
        assert [r.op for r in got] == [name for name, _ in labels]


def test_a_new_cost_at_a_reused_id_is_not_mistaken_for_the_old_one():
    index, labels = [0, 0, 1], [("a", 0), ("b", 1), ("c", None)]
    for n in range(50):  # costs freed between steps: their ids come back for other costs
        best = [_cost(n), _cost(n + 100)]
        assert _fields(mapper._rows(best, index, labels)) == _fields(_renamed_loop(best, index, labels))


@settings(max_examples=12, deadline=None)
@given(st.integers(min_value=1, max_value=32), st.integers(min_value=256, max_value=8192),
       st.sampled_from(["bf16", "fp8"]), st.sampled_from(["bf16", "fp8"]))
def test_steps_rows_equal_rows_made_afresh(batch, context, weight, kv):
    """A real step's rows (some shared with earlier steps) equal those of the same step with
    every row memo cleared, and every row names its own op."""
    workload = Workload(phase="decode", batch=batch, context=context)
    # the same shapes asked twice: the second step reads kept rows
    api.simulate("llama-3.1-8b", "h100-sxm", workload, weight_dtype=weight, kv_dtype=kv)
    kept = api.simulate("llama-3.1-8b", "h100-sxm", workload, weight_dtype=weight, kv_dtype=kv)
    mapper._ROW_PLANS.clear()
    afresh = api.simulate("llama-3.1-8b", "h100-sxm", Workload(phase="decode", batch=batch, context=context),
                          weight_dtype=weight, kv_dtype=kv)
    assert _fields(kept.ops) == _fields(afresh.ops)
    assert kept.to_dict() == afresh.to_dict()
    assert len({r.op for r in kept.ops}) == len(kept.ops)
