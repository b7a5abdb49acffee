"""Issue 20, seventh pass: the shape classes and first-op walks, and the mapper's per-op rows, made once per (op class, cost) and shared by
the steps whose op names and classes are the same, equal the op-by-op renaming they replace,
field by field, whatever the order of classes, repeats and costs (hypothesis) and on real steps
of every format, batch and context."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from accelsim import Workload, api, pipeline
from accelsim.hardware import common
from accelsim.hardware.base import OpCost
from accelsim.model.lower import lower
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


# The shape classes found from the ops that copy none (a copy's class is its original's) equal
# the op-by-op walk of before, on held and made graphs, lowered and fused.
def _loop_classes(graph, spatial):
    shapes, seen, index = [], {}, []
    originals = graph.originals() if not spatial else None
    for n, op in enumerate(graph.known() if originals is not None else graph.ops):
        if originals is not None and originals[n] != n:
            index.append(index[originals[n]])
            continue
        key = mapper._shape_key(op, spatial)
        i = seen.get(key)
        if i is None:
            i = seen[key] = len(shapes)
            shapes.append((key, op))
        index.append(i)
    return shapes, index


def test_shape_classes_equal_the_op_by_op_walk():
    hw = api.resolve_hardware("h100-sxm")
    for model in ("llama-3.1-8b", "jamba-v0.1", "deepseek-v3", "gemma-2-9b", "mamba2-2.7b"):
        spec = api.resolve_model(model)
        for workload in (Workload(phase="decode", batch=3, context=1000),
                         Workload(phase="prefill", batch=1, context=777)):
            for graph in (lower(spec, workload), lower(spec, workload, deferred=False),
                          pipeline.chip_graph(lower(spec, workload), hw)):
                for spatial in (False, True):
                    got, want = mapper._shape_classes(graph, spatial), _loop_classes(graph, spatial)
                    assert got[1] == want[1], model
                    assert [(k, op.name) for k, op in got[0]] == [(k, op.name) for k, op in want[0]], model


@given(st.lists(st.integers(min_value=0, max_value=30), max_size=60))
def test_firsts_are_the_ops_that_copy_none(marks):
    originals = [min(m, n) for n, m in enumerate(marks)]  # each op copies itself or an earlier one
    assert common.firsts(originals) == [i for i, o in enumerate(originals) if o == i]
    assert common.firsts(range(len(marks))) == list(range(len(marks)))


def test_a_held_parts_names_are_checked_from_its_kept_set():
    """A part's names are hashed once per labels list and reused by later steps; a name taken,
    or given twice within the part, is still refused by name."""
    import pytest

    from accelsim.graph import Graph, _name_set
    from accelsim.model.spec import load_model
    spec = load_model("llama-3.2-1b")
    first = lower(spec, Workload(phase="decode", batch=1, context=10))
    again = lower(spec, Workload(phase="decode", batch=9, context=4000))
    (_, part), (_, later) = first.parts()[0], again.parts()[0]
    assert later.labels() is part.labels() and _name_set(later.labels()) is _name_set(part.labels())
    assert _name_set(part.labels()) == {name for name, _ in part.labels()}
    with pytest.raises(ValueError, match="duplicate op name 'layers.2.attn_norm'"):
        first.defer(part, first.originals()[first.parts()[0][0]:][:part.count])

    class Twice(type(part)):  # the same names given twice within one part
        def _make_labels(self):
            half = part.labels()[: self.count // 2]
            return half + half

    twice = object.__new__(Twice)
    twice.__dict__.update(part.__dict__, _labels=None)
    graph = Graph(name="g")
    for op in first.known()[: first.parts()[0][0]]:
        graph.add(op)
    with pytest.raises(ValueError, match="duplicate op name"):
        graph.defer(twice, first.originals()[first.parts()[0][0]:][:part.count])


def test_held_layers_outputs_are_made_when_asked_and_chain_as_before():
    """A held run of layers makes only its last output at once (the head reads it); the outputs
    between are made when asked for, named as before, the last being that very object."""
    from accelsim.model.spec import load_model
    for model in ("llama-3.1-8b", "gemma-2-9b", "jamba-v0.1"):
        spec = load_model(model)
        lower(spec, Workload(phase="decode", batch=1, context=100))  # names kept from here on
        graph = lower(spec, Workload(phase="decode", batch=2, context=300))
        parts = [part for _, part in graph.parts()]
        assert parts and all(part._inputs is None for part in parts), model
        ops = graph.ops  # makes every part
        for part in parts:
            inputs = part.inputs
            assert inputs[0] is part.x and inputs[-1] is part.out and len(inputs) == len(part.layers) + 1
            if model == "llama-3.1-8b":
                assert [t.name for t in inputs[1:]] == [f"layers.{layer}.mlp_residual.out" for layer in part.layers]
        # the whole graph is the one lowered without holding any layer
        assert ops == lower(spec, Workload(phase="decode", batch=2, context=300), deferred=False).ops
