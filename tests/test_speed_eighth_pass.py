"""Issue 20, eighth pass: each faster form equals the one it replaces.  ``Result.replaced``
equals ``dataclasses.replace``; the silicon and layer-kind memos give what computing afresh
gives, per spec object, and follow an edited config (a new spec object)."""
from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from accelsim import Workload, api
from accelsim.hardware import area
from accelsim.sim.result import Result

_FIELDS = [f.name for f in dataclasses.fields(Result)]
_values = st.one_of(st.none(), st.integers(-5, 5), st.floats(allow_nan=False), st.text(max_size=4),
                    st.tuples(st.text(max_size=3)), st.dictionaries(st.text(max_size=3), st.floats(allow_nan=False),
                                                                     max_size=2))


def _result() -> Result:
    return api.simulate("llama-3.1-8b", "h100-sxm", Workload(phase="decode", batch=3, context=900))


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.sampled_from(_FIELDS), _values, max_size=6))
def test_replaced_equals_dataclasses_replace(changes):
    base = _result()
    got, want = base.replaced(**changes), dataclasses.replace(base, **changes)
    assert type(got) is Result and got == want
    assert list(got.__dict__) == list(want.__dict__)  # the same fields, in the same order
    assert got.__dict__ == want.__dict__
    assert base == _result()  # the original is untouched


def test_replaced_refuses_an_unknown_field_as_replace_does():
    base = _result()
    with pytest.raises(TypeError):
        dataclasses.replace(base, no_such_field=1)
    with pytest.raises(TypeError, match="no_such_field"):
        base.replaced(no_such_field=1)


_CHIPS = ["h100-sxm", "mi300x", "tpu-v5e", "groq-lpu", "cerebras-wse3", "hardwired-llama-3.1-8b",
          "fpga-ternary-mmfree", "b200"]


@pytest.mark.parametrize("chip", _CHIPS)
@pytest.mark.parametrize("model", [None, "llama-3.1-8b", "mixtral-8x7b"])
def test_silicon_memo_equals_computing_afresh(chip, model):
    hw = api.resolve_hardware(chip)
    spec = api.resolve_model(model) if model is not None else None
    for _ in range(2):  # the first asking computes, the second finds it
        assert area.area_breakdown(hw, spec) == area._area_breakdown(hw, spec)
        assert area.chip_dies(hw, spec) == area._chip_dies(hw, spec)


def test_silicon_memo_follows_an_edited_chip(tmp_path):
    path = tmp_path / "chip.yaml"
    text = (api.loader.PACKAGE_ROOT.parent / "hw_configs" / "h100-sxm.yaml").read_text(encoding="utf-8")
    assert "  die: 814 mm2\n" in text and "name: h100-sxm\n" in text
    text = text.replace("name: h100-sxm\n", "name: my-chip\n")  # no datasheet die: the config's
    path.write_text(text, encoding="utf-8")
    workload = Workload(phase="decode", batch=2, context=512)
    assert area.area_breakdown(api.resolve_hardware(str(path))).die_mm2 == 814
    assert api.simulate("llama-3.1-8b", str(path), workload).die_mm2 == 814
    path.write_text(text.replace("  die: 814 mm2\n", "  die: 600 mm2\n"), encoding="utf-8")
    assert area.area_breakdown(api.resolve_hardware(str(path))).die_mm2 == 600
    assert api.simulate("llama-3.1-8b", str(path), workload).die_mm2 == 600  # the whole step follows


@pytest.mark.parametrize("model", ["llama-3.1-8b", "jamba-v0.1", "gemma-2-9b", "deepseek-v3", "mamba2-2.7b"])
def test_layer_kinds_memo_equals_resolving_afresh(model):
    from accelsim.model import spec as spec_module
    spec = api.resolve_model(model)
    for typed in (spec, spec.with_dtypes(weight="fp8"), spec.with_dtypes(kv="fp8")):
        assert typed.layer_kinds == spec_module._resolve(typed)
        assert typed.layer_kinds is typed.layer_kinds  # kept per spec object


def test_layer_kinds_follow_an_edited_model(tmp_path):
    path = tmp_path / "m.yaml"
    text = (api.loader.PACKAGE_ROOT.parent / "models" / "llama-3.1-8b.yaml").read_text(encoding="utf-8")
    path.write_text(text, encoding="utf-8")
    assert len(api.resolve_model(str(path)).layer_kinds) == 32
    path.write_text(text.replace("num_layers: 32", "num_layers: 16"), encoding="utf-8")
    assert len(api.resolve_model(str(path)).layer_kinds) == 16


def test_layer_one_is_marked_a_copy_of_layer_zero_once_shown_equal():
    from accelsim.model.lower import lower
    spec = api.resolve_model("llama-3.1-8b")
    for deferred in (True, False):
        graph = lower(spec, Workload(phase="decode", batch=3, context=700), deferred=deferred)
        labels, originals = graph.labels(), graph.originals()
        assert originals is not None
        first = {name: i for i, (name, _) in enumerate(labels) if name.startswith("layers.0.")}
        for i, (name, layer) in enumerate(labels):
            if layer == 1:
                assert originals[i] == first[name.replace("layers.1.", "layers.0.", 1)]


def test_mark_copies_refuses_marks_that_do_not_point_back():
    from accelsim.graph import Graph
    from accelsim.model.lower import lower
    graph = lower(api.resolve_model("llama-3.2-1b"), Workload(phase="decode", batch=1, context=64))
    with pytest.raises(ValueError, match="earlier"):
        graph.mark_copies(3, [3])
    with pytest.raises(ValueError, match="earlier"):
        graph.mark_copies(len(graph), [0])
    assert Graph().originals() == []


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 64), st.integers(1, 9000), st.integers(0, 9000), st.booleans(),
       st.one_of(st.none(), st.integers(1, 5000)), st.integers(1, 9000))
def test_kept_attention_pairs_equal_the_formula_and_follow_replace(q_len, kv_len, extra, causal, window, other):
    from accelsim.graph import Attention, Tensor

    def formula(a: Attention) -> int:  # the closed form, written out again as a loop
        if not a.causal:
            return a.q_len * (a.kv_len if a.window is None else min(a.kv_len, a.window))
        first = a.kv_len - a.q_len
        return sum(min(p + 1, a.window if a.window is not None else p + 1) for p in range(first, a.kv_len))
    kv_len = max(kv_len, q_len)
    x = Tensor("x", (q_len, 64), "bf16")
    op = Attention("a", (x,), (x,), q_len=q_len, kv_len=kv_len, causal=causal, window=window)
    assert op.pairs == formula(op) and op.pairs == op.__dict__["pairs"]  # kept after the first read
    moved = dataclasses.replace(op, kv_len=max(other, q_len))
    assert moved.pairs == formula(moved)  # a replaced op computes its own


@pytest.mark.parametrize("model", ["llama-3.1-8b", "jamba-v0.1", "deepseek-v3", "gemma-2-9b"])
def test_kept_firsts_equal_the_walk_and_follow_added_ops(model):
    from accelsim.graph import Elementwise, Tensor, firsts
    from accelsim.model.lower import lower
    from accelsim.transform import fuse
    graph = lower(api.resolve_model(model), Workload(phase="decode", batch=2, context=300))
    for g in (graph, fuse(graph)):
        originals = g.originals()
        assert originals is not None
        assert g.firsts() == firsts(originals) == [i for i, o in enumerate(originals) if i == o]
        assert g.firsts() is g.firsts()  # kept
        assert g.copy("again").firsts() == g.firsts()
    x = Tensor("extra.in", (2, 8), "bf16")
    n = len(graph)
    graph.add(Elementwise("extra", (x,), (Tensor("extra.out", (2, 8), "bf16"),), role="residual"))
    assert graph.firsts() == [*firsts(graph.originals()[:n]), n]  # a new op that copies none


def _counting_reads(monkeypatch) -> list[str]:
    from accelsim.config import loader
    reads: list[str] = []
    real = loader._read_upto

    def counted(source, size, limit):
        reads.append(source)
        return real(source, size, limit)
    monkeypatch.setattr(loader, "_read_upto", counted)
    return reads


def test_a_settled_unchanged_file_is_not_read_again_and_any_edit_is_seen(tmp_path, monkeypatch):
    import os

    from accelsim.config import loader
    from accelsim.model.spec import load_model
    reads = _counting_reads(monkeypatch)
    path = tmp_path / "m.yaml"
    text = (loader.PACKAGE_ROOT.parent / "models" / "llama-3.1-8b.yaml").read_text(encoding="utf-8")
    path.write_text(text, encoding="utf-8")
    # the clock an hour on: the file's times are long past (settled)
    monkeypatch.setattr(loader, "_now_ns", lambda: os.stat(path).st_ctime_ns + 3600 * 10**9)
    first = load_model(str(path))
    assert load_model(str(path)) is first and reads == [str(path)]  # read once, then kept
    # an edit of the same size: the write moves the change time (utime too), so it is read
    path.write_text(text.replace("num_layers: 32", "num_layers: 16"), encoding="utf-8")
    info = os.stat(path)
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns + 10**9))  # whatever the clock's tick
    assert load_model(str(path)).num_layers == 16 and len(reads) == 2
    # a file replaced by another (a new inode) of the same size and times is read too
    other = tmp_path / "other.yaml"
    other.write_text(text, encoding="utf-8")
    os.utime(other, ns=(os.stat(path).st_atime_ns, os.stat(path).st_mtime_ns))
    os.replace(other, path)
    assert load_model(str(path)).num_layers == 32 and len(reads) == 3


def test_a_file_written_just_before_its_read_is_read_every_time(tmp_path, monkeypatch):
    from accelsim.config import loader
    from accelsim.model.spec import load_model
    reads = _counting_reads(monkeypatch)
    path = tmp_path / "m.yaml"
    text = (loader.PACKAGE_ROOT.parent / "models" / "llama-3.1-8b.yaml").read_text(encoding="utf-8")
    path.write_text(text, encoding="utf-8")
    for layers in (32, 16, 32, 16):  # rewrites of one size within the same clock tick, maybe
        path.write_text(text.replace("num_layers: 32", f"num_layers: {layers}"), encoding="utf-8")
        assert load_model(str(path)).num_layers == layers
    assert len(reads) == 4


def test_large_files_are_not_kept(tmp_path, monkeypatch):
    import os

    from accelsim.config import loader
    reads = _counting_reads(monkeypatch)
    path = tmp_path / "big.csv"
    path.write_text("a\n" + "1\n" * (loader._TEXT_KEPT_BYTES // 2 + 1), encoding="utf-8")
    monkeypatch.setattr(loader, "_now_ns", lambda: os.stat(path).st_ctime_ns + 3600 * 10**9)
    assert loader.read_text(path, max_bytes=4 << 20) == loader.read_text(path, max_bytes=4 << 20)
    assert len(reads) == 2


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.floats(min_value=1e-300, max_value=1e300), st.sampled_from([1e-300, 0.1, 0.2, 1e16])),
                min_size=1, max_size=60))
def test_sequential_schedule_sums_the_ops_as_the_list_did(times):
    import math

    from accelsim.hardware.base import OpCost, sequential_schedule
    costs = [OpCost(op=f"o{i}", kind="vector", layer=None, time_s=t, compute_s=0.0, memory_s={}, bytes={},
                    energy_j={}, flops=0.0, peak_flops=1.0, bound="memory", mapping="m")
             for i, t in enumerate(times)]
    got = sequential_schedule(costs, Workload(phase="decode", batch=2, context=64)).latency_s
    want = sum([c.time_s for c in costs])
    assert (math.isnan(got) and math.isnan(want)) or (got == want and math.copysign(1, got) == math.copysign(1, want))


def _kernel_copy_weights_before(part):
    """``fusion._KernelCopies.weights`` up to the seventh pass: the marks walked on every call."""
    from itertools import chain
    marks = list(map(part.copies.__getitem__, part.run))
    held = {c: [t for t in part.kernels[c].inputs if t.role == "weight"] for c in dict.fromkeys(marks)}
    return list(zip(part.names, chain.from_iterable(map(held.__getitem__, marks))))


@pytest.mark.parametrize("model", ["llama-3.1-8b", "jamba-v0.1", "deepseek-v3", "gemma-2-9b", "mixtral-8x7b"])
def test_held_kernel_weights_equal_the_walk_of_before(model):
    from accelsim.model.lower import lower
    from accelsim.transform import fuse
    from accelsim.transform.fusion import _KernelCopies
    spec = api.resolve_model(model)
    seen = 0
    for batch, context in ((1, 100), (7, 3000), (32, 8000)):
        for typed in (spec, spec.with_dtypes(weight="fp8")):
            fused = fuse(lower(typed, Workload(phase="decode", batch=batch, context=context)))
            for _, part in fused.parts():
                if isinstance(part, _KernelCopies):
                    got = part.weights()
                    assert [(n, id(t)) for n, t in got] == [(n, id(t)) for n, t in _kernel_copy_weights_before(part)]
                    seen += 1
    assert seen


def _labels_from_key(key, lists):
    """``Graph.labels`` rebuilt from ``Graph.label_key``: the made runs with the held lists between."""
    _, made, parts = key
    out = list(made[0])
    for (at, count, ident), labels, run in zip(parts, lists, made[1:]):
        assert id(labels) == ident and len(labels) == count and len(out) == at
        out += labels
        out += run
    return out


@pytest.mark.parametrize("model", ["llama-3.1-8b", "jamba-v0.1", "deepseek-v3", "gemma-2-9b", "rwkv7-2.9b"])
def test_label_key_decides_the_labels(model):
    from accelsim.model.lower import lower
    from accelsim.transform import fuse
    spec = api.resolve_model(model)
    keys: dict = {}
    for batch, context, phase in ((1, 100, "decode"), (5, 2000, "decode"), (2, 64, "prefill")):
        lowered = lower(spec, Workload(phase=phase, batch=batch, context=context, prompt=context))
        for graph in (lowered, fuse(lowered), fuse(lowered, "epilogue", ("gated_activation",))):
            key, lists = graph.label_key()
            assert _labels_from_key(key, lists) == graph.labels()
            held = keys.setdefault(key, (graph.labels(), lists))
            assert held[0] == graph.labels()  # an equal key: equal labels
    made = lower(spec, Workload(phase="decode", batch=1, context=100), deferred=False)
    key, lists = made.label_key()
    assert lists == [] and _labels_from_key(key, lists) == made.labels()


def _typed(value):
    """A value with the type of every number in it (``2 == 2.0``, but a label shows them apart)."""
    if isinstance(value, dict):
        return {k: _typed(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_typed(v) for v in value]
    return (type(value), value)


def _same_cost(a, b) -> bool:
    return _typed(a.__dict__) == _typed(b.__dict__)


_GPUS = ["h100-sxm", "h200", "a100-sxm", "b200", "mi300x", "mi355x"]
_SETUPS: dict = {}


def _setup(chip: str, model: str, weight: str | None):
    key = (chip, model, weight)
    if key not in _SETUPS:
        from accelsim import hardware, pipeline
        from accelsim.graph import Attention, MatMul
        hw = api.resolve_hardware(chip)
        spec = pipeline.typed_model(api.resolve_model(model), hw, weight=weight)
        workload = Workload(phase="decode", batch=2, context=1024)
        fused = pipeline.chip_graph(pipeline.lowered(spec, workload), hw)
        backend = hardware.backend(hw)
        gemm = next(op for op in fused.ops if isinstance(op, MatMul))
        att = next(op for op in fused.ops if isinstance(op, Attention))
        _SETUPS[key] = (hw, backend, gemm, att, backend.place(fused, hw, spec, workload))
    return _SETUPS[key]


@settings(max_examples=120, deadline=None)
@given(chip=st.sampled_from(_GPUS), model=st.sampled_from(["llama-3.1-8b", "gemma-2-9b", "qwen2.5-7b"]),
       weight=st.sampled_from([None, "fp8", "int4"]), m=st.integers(1, 70_000), k=st.integers(1, 30_000),
       n=st.integers(1, 60_000), count=st.sampled_from([1, 2, 8, 64]))
def test_the_ranked_gemm_cost_equals_its_tiling_costed_alone(chip, model, weight, m, k, n, count):
    import dataclasses as dc
    hw, backend, gemm, _, placement = _setup(chip, model, weight)
    op = dc.replace(gemm, m=m, k=k, n=n, count=count)
    mappings = backend.mappings(op, hw)
    keys = backend.ranks(op, mappings, hw, placement)
    if keys is None:
        return
    for j in range(len(mappings)):  # every tiling, the winner and the others
        assert _same_cost(backend.ranked_cost(op, mappings, j, hw, placement), backend.cost(op, mappings[j], hw, placement))


@settings(max_examples=120, deadline=None)
@given(chip=st.sampled_from(_GPUS), batch=st.integers(1, 512), q_len=st.integers(1, 4096),
       past=st.integers(0, 200_000), window=st.one_of(st.none(), st.integers(1, 8192)), causal=st.booleans(),
       group=st.sampled_from([1, 2, 4, 8]), kv_heads=st.integers(1, 16))
def test_the_ranked_attention_cost_equals_its_tiling_costed_alone(chip, batch, q_len, past, window, causal,
                                                                   group, kv_heads):
    import dataclasses as dc
    hw, backend, _, att, placement = _setup(chip, "llama-3.1-8b", None)
    op = dc.replace(att, batch=batch, q_len=q_len, kv_len=q_len + past, window=window, causal=causal,
                    heads=group * kv_heads, kv_heads=kv_heads)
    mappings = backend.mappings(op, hw)
    keys = backend.ranks(op, mappings, hw, placement)
    if keys is None:
        return
    for j in range(len(mappings)):
        assert _same_cost(backend.ranked_cost(op, mappings, j, hw, placement), backend.cost(op, mappings[j], hw, placement))


def test_ranked_cost_is_read_only_for_the_very_mappings_ranked():
    import dataclasses as dc

    from accelsim.hardware import gpu
    hw, backend, gemm, _, placement = _setup("h100-sxm", "llama-3.1-8b", None)
    mappings = backend.mappings(gemm, hw)
    backend.ranks(gemm, mappings, hw, placement)
    other = dc.replace(gemm, m=gemm.m + 1)  # an equal-looking op object is not the one ranked
    assert gpu._ranked_terms(other, mappings, 0, hw, placement) is None
    assert gpu._ranked_terms(gemm, list(reversed(mappings)), 0, hw, placement) is None
    assert gpu._ranked_terms(gemm, mappings, 0, hw, placement) is not None
    assert _same_cost(backend.ranked_cost(other, mappings, 1, hw, placement), backend.cost(other, mappings[1], hw, placement))


_LAYERED: dict = {}


def _two_layers(model: str):
    """Layer 0 as lowering's template, layer 1's ops, its input and output (a graph with
    nothing held), for ``_equals_renamed`` against the renamed copies of before."""
    if model not in _LAYERED:
        from accelsim.model.lower import _Layer, lower
        graph = lower(api.resolve_model(model), Workload(phase="decode", batch=3, context=500), deferred=False)
        ops = graph.ops
        at = {k: [i for i, op in enumerate(ops) if op.layer == k] for k in (0, 1, 2)}
        ops0, ops1 = ops[at[0][0]:at[0][-1] + 1], ops[at[1][0]:at[1][-1] + 1]
        x0, x1, x2 = (ops[at[k][0]].inputs[0] for k in (0, 1, 2))
        _LAYERED[model] = (lambda: _Layer(0, x0, ops0, x1, at[0][0]), ops1, x1, x2)
    return _LAYERED[model]


def _perturbed(op, how: int, by: int):
    import dataclasses as dc

    from accelsim.graph import Tensor
    if how == 0:
        return dc.replace(op, name=op.name + "x" * by)
    if how == 1:
        return dc.replace(op, layer=(op.layer or 0) + by)
    if how == 2:
        shape = [f.name for f in dc.fields(op) if f.name in ("m", "rows", "elements", "cols", "kv_len", "batch")]
        return dc.replace(op, **{shape[0]: getattr(op, shape[0]) + by}) if shape else op
    if how == 3:  # an input tensor renamed, or of another shape
        t = op.inputs[-1]
        other = Tensor(t.name + "y", t.shape, t.dtype, t.role) if by % 2 else Tensor(t.name, (*t.shape, by), t.dtype, t.role)
        return dc.replace(op, inputs=(*op.inputs[:-1], other))
    if how == 4:
        return dc.replace(op, role="residual" if op.role != "residual" else "norm")
    return dc.replace(op)  # an equal copy


@settings(max_examples=150, deadline=None)
@given(model=st.sampled_from(["llama-3.1-8b", "mistral-7b", "qwen2.5-7b", "mixtral-8x7b", "gpt2"]),
       pick=st.integers(0, 10_000), how=st.integers(0, 5), by=st.integers(1, 3), out_renamed=st.booleans())
def test_the_layer_check_equals_comparing_renamed_copies(model, pick, how, by, out_renamed):
    from accelsim.graph import Tensor
    from accelsim.model.lower import _equals_renamed, _renamed_layer
    template, ops1, x1, x2 = _two_layers(model)
    ops = list(ops1)
    i = pick % len(ops)
    ops[i] = _perturbed(ops[i], how, by)
    out = Tensor(x2.name + "z", x2.shape, x2.dtype, x2.role) if out_renamed else x2
    copies, renamed_out = _renamed_layer(template(), 1, x1)
    want = copies == ops and renamed_out == out
    assert _equals_renamed(template(), 1, x1, ops, out) == want
    assert _equals_renamed(template(), 1, x1, list(ops1), x2)  # unperturbed: equal
    assert not _equals_renamed(template(), 1, x1, list(ops1[:-1]), x2)  # an op short


def _recipe_before(template):
    """``lower._recipe`` up to the seventh pass (a closure numbering tensors as met)."""
    from accelsim.model.lower import _INPUT, _KEEP, _RENAMED
    old, given = f"layers.{template.layer}.", template.x.name
    index: dict[int, int] = {}
    tensors: list = []

    def ref(t):
        i = index.get(id(t))
        if i is None:
            i = index[id(t)] = len(tensors)
            mode = _INPUT if t.name == given else _RENAMED if t.name.startswith(old) else _KEEP
            tensors.append((t, mode, t.name[len(old):]))
        return i
    ops = tuple((op, op.name[len(old):] if op.name.startswith(old) else None, op.layer == template.layer,
                 tuple(map(ref, op.inputs)), tuple(map(ref, op.outputs))) for op in template.ops)
    weights = tuple(i for _, _, _, ins, _ in ops for i in ins if tensors[i][0].role == "weight")
    return tuple(tensors), ops, ref(template.out), weights


@pytest.mark.parametrize("model", ["llama-3.1-8b", "mistral-7b", "qwen2.5-7b", "mixtral-8x7b", "gpt2"])
def test_recipe_equals_the_closure_of_before(model):
    from accelsim.model.lower import _recipe
    template, _, _, _ = _two_layers(model)
    layer = template()
    got = _recipe(layer)
    want = _recipe_before(layer)
    assert [(id(t), m, r) for t, m, r in got.tensors] == [(id(t), m, r) for t, m, r in want[0]]
    assert [(id(op), *rest) for op, *rest in got.ops] == [(id(op), *rest) for op, *rest in want[1]]
    assert (got.out, got.weights) == (want[2], want[3])
    # a layer output that no op names is numbered last, as before (and now listed too: the
    # closure numbered it after the list was taken, an index past its end)
    odd = template()
    from accelsim.graph import Tensor
    odd.out = Tensor("elsewhere", (1,), "bf16")
    got, want = _recipe(odd), _recipe_before(odd)
    assert got.out == want[2] == len(want[0]) == len(got.tensors) - 1 and got.tensors[-1][0] is odd.out


def _shape_key_before(op, spatial):
    """``mapper._shape_key`` up to the seventh pass: the class name and (field, value) pairs."""
    import dataclasses as dc
    names = tuple(sorted(f.name for f in dc.fields(type(op)) if f.name not in ("name", "inputs", "outputs", "layer")))
    values = tuple((k, op.__dict__[k]) for k in names)
    tensors = tuple([(t.shape, t.dtype, t.role) for t in (*op.inputs, *op.outputs)])
    return (type(op).__name__, values, tensors, op.layer if spatial else None)


@pytest.mark.parametrize("model", ["llama-3.1-8b", "jamba-v0.1", "deepseek-v3", "gemma-2-9b", "mixtral-8x7b"])
def test_shape_keys_group_ops_as_the_keys_of_before(model):
    from accelsim.model.lower import lower
    from accelsim.sim import mapper
    from accelsim.transform import fuse
    spec = api.resolve_model(model)
    for workload in (Workload(phase="decode", batch=3, context=700), Workload(phase="prefill", batch=2, prompt=300)):
        lowered = lower(spec, workload, deferred=False)
        ops = [*lowered.ops, *fuse(lowered).ops]
        for spatial in (False, True):
            new = [mapper._shape_key(op, spatial) for op in ops]
            old = [_shape_key_before(op, spatial) for op in ops]
            # the same partition: two ops share a new key exactly when they share an old one
            first_new, first_old = {}, {}
            assert [first_new.setdefault(k, i) for i, k in enumerate(new)] == \
                [first_old.setdefault(k, i) for i, k in enumerate(old)]


def test_held_parts_names_are_taken_without_copying_them():
    from accelsim.graph import Elementwise, Tensor
    from accelsim.model.lower import lower
    graph = lower(api.resolve_model("llama-3.1-8b"), Workload(phase="decode", batch=2, context=100))
    assert graph.deferred
    assert graph._names == {name for name, _ in graph.labels()}  # every name, held ones included
    held_name = graph.labels()[graph.parts()[0][0] + 3][0]
    t = Tensor("x.in", (2, 8), "bf16")

    def op(name):
        return Elementwise(name, (t,), (Tensor(name + ".out", (2, 8), "bf16"),), role="residual")
    with pytest.raises(ValueError, match=f"duplicate op name '{held_name}'"):
        graph.add(op(held_name))
    with pytest.raises(ValueError, match=f"duplicate op name '{held_name}'"):
        graph.extend([op("fresh.one"), op(held_name)], [None, None])
    copy = graph.copy("again")
    assert copy._names == graph._names
    with pytest.raises(ValueError, match="duplicate op name"):
        copy.add(op(held_name))
    # a second part with the same names is refused, naming the first one taken
    at, part = graph.parts()[0]
    with pytest.raises(ValueError, match=f"duplicate op name '{part.labels()[0][0]}'"):
        graph.defer(part, graph.originals()[at:at + part.count])
