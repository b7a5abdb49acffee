"""Issue 20, sixth pass: the step's energy and footprint sums, rewritten for speed, equal the
op-by-op loops they replace to the bit (the same additions in the same order), key order
included, on any costs (hypothesis) and on real steps."""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import replace as _replace

from hypothesis import given, settings
from hypothesis import strategies as st

from accelsim import Workload, api, hardware, pipeline
from accelsim.graph import Attention, Graph
from accelsim.hardware import common
from accelsim.hardware.base import OpCost
from accelsim.model.lower import lower
from accelsim.sim import mapper

COMPONENTS = ["compute", "vector", "hbm", "l2", "compute activity", "hbm activity", "static", "sram"]


def _loop_energy(costs, groups, chips_per_stage, static_w, chips, busy_s):
    """The op-by-op loop of before (``pipeline.step_energy`` up to the fifth pass)."""
    energy: dict[str, float] = defaultdict(float)
    for c in costs:
        for component, joules in c.energy_j.items():
            energy[component] += pipeline.step_joules(joules, groups, chips_per_stage, 0.0, chips, 0.0)
    energy["static"] = pipeline.step_joules(0.0, groups, chips_per_stage, static_w, chips, busy_s)
    return dict(energy)


def _cost(name: str, energy: dict[str, float]) -> OpCost:
    return OpCost(op=name, kind="vector", layer=None, time_s=1e-6, compute_s=0.0, memory_s={}, bytes={},
                  energy_j=energy, flops=0.0, peak_flops=1.0, bound="memory", mapping="m")


joules = st.one_of(st.floats(min_value=0.0, max_value=1e3), st.floats(min_value=1e-30, max_value=1e-20),
                   st.sampled_from([0.0, -0.0, 1e-300, 0.1, 0.2, 0.3, 1e16]),
                   st.floats(allow_nan=False, allow_infinity=True))
dicts = st.dictionaries(st.sampled_from(COMPONENTS), joules, max_size=6)


@settings(max_examples=300, deadline=None)
@given(shapes=st.lists(dicts, min_size=1, max_size=6), order=st.lists(st.integers(0, 5), max_size=80),
       groups=st.integers(1, 8), per_stage=st.integers(1, 8), chips=st.integers(1, 64),
       static_w=st.floats(0, 1e3), busy_s=st.floats(0, 1.0))
def test_step_energy_equals_the_op_by_op_loop_to_the_bit(shapes, order, groups, per_stage, chips,
                                                          static_w, busy_s):
    # ops of one shape share one energy dict, as the mapper's renamed rows do
    costs = [_cost(f"op{k}", shapes[i % len(shapes)]) for k, i in enumerate(order)]
    got = pipeline.step_energy(costs, groups, per_stage, static_w, chips, busy_s)
    want = _loop_energy(costs, groups, per_stage, static_w, chips, busy_s)
    assert list(got) == list(want)  # the same components in the same order
    for k in want:
        assert (math.isnan(got[k]) and math.isnan(want[k])) or (
            got[k] == want[k] and math.copysign(1, got[k]) == math.copysign(1, want[k])), k


def _loop_footprint(graph: Graph) -> dict[str, float]:
    """Before the sixth pass: every op walked, a running total per role."""
    resident = {"weight": graph.weight_bytes, "kv_cache": 0.0, "state": 0.0}
    for op in graph.ops:
        for t in op.inputs:
            if t.role in ("kv_cache", "state"):
                resident[t.role] += t.nbytes
        for t in op.outputs:
            if t.role == "kv_cache":
                resident["kv_cache"] += t.nbytes
    return resident


def _loop_peak(graph: Graph) -> float:
    return max([0.0] + [sum(t.nbytes for t in (*op.inputs, *op.outputs) if t.role == "activation")
                        for op in graph.ops])


def test_footprint_and_peak_equal_the_op_by_op_walk_on_held_and_made_graphs():
    for model in ("llama-3.1-8b", "jamba-v0.1", "deepseek-v3", "gemma-2-9b", "mamba2-2.7b"):
        spec = api.resolve_model(model)
        for workload in (Workload(phase="decode", batch=3, context=1000),
                         Workload(phase="prefill", batch=1, context=777)):
            held, made = lower(spec, workload), lower(spec, workload, deferred=False)
            want = _loop_footprint(lower(spec, workload, deferred=False))
            assert common._footprint(held) == want == common._footprint(made), model
            assert common._peak_activation_bytes(held) == _loop_peak(made), model


def test_a_real_step_energy_equals_the_loop():
    costed = api.costed_step("llama-3.1-8b", "h100-sxm", Workload(phase="decode", batch=5, context=3001),
                             kv_dtype="fp8")
    costs = costed.result.ops
    assert pipeline.step_energy(costs, 2, 1, 700.0, 1, 0.01) == _loop_energy(costs, 2, 1, 700.0, 1, 0.01)


# Attention's tilings ranked as arrays (``GpuBackend.ranks``) give the keys costing each tiling
# alone gives, to the bit, and so the same choice with the same tie-break.
GPUS = ["h100-sxm", "h200", "a100-sxm", "b200", "mi300x", "mi355x"]
_BASE: dict[tuple[str, str], tuple] = {}


def _attention_on(chip: str, model: str):
    key = (chip, model)
    if key not in _BASE:
        hw = api.resolve_hardware(chip)
        spec = pipeline.typed_model(api.resolve_model(model), hw, weight=None,
                                    kv="fp8" if chip == "mi355x" else None)
        workload = Workload(phase="decode", batch=2, context=1024)
        fused = pipeline.chip_graph(pipeline.lowered(spec, workload), hw)
        backend = hardware.backend(hw)
        att = next(op for op in fused.ops if isinstance(op, Attention))
        _BASE[key] = (hw, backend, att, backend.place(fused, hw, spec, workload))
    return _BASE[key]


@settings(max_examples=150, deadline=None)
@given(chip=st.sampled_from(GPUS), model=st.sampled_from(["llama-3.1-8b", "gemma-2-9b", "gemma-3-1b", "qwen2.5-7b"]),
       batch=st.integers(1, 512), q_len=st.integers(1, 4096), past=st.integers(0, 200_000),
       window=st.one_of(st.none(), st.integers(1, 8192)), causal=st.booleans(),
       group=st.sampled_from([1, 2, 4, 8, 16]), kv_heads=st.integers(1, 16))
def test_attention_tilings_ranked_as_arrays_equal_each_costed_alone(chip, model, batch, q_len, past, window,
                                                                  causal, group, kv_heads):
    hw, backend, att, placement = _attention_on(chip, model)
    op = _replace(att, batch=batch, q_len=q_len, kv_len=q_len + past, window=window, causal=causal,
                  heads=group * kv_heads, kv_heads=kv_heads)
    mappings = backend.mappings(op, hw)
    assert len(mappings) > 1
    keys = backend.ranks(op, mappings, hw, placement)
    alone = [mapper.rank(backend.cost(op, m, hw, placement)) for m in mappings]
    if keys is not None:
        assert keys == alone
    # the mapper's choice: the first of the least keys, costed in full
    want = min((backend.cost(op, m, hw, placement) for m in mappings), key=mapper.rank)
    assert mapper.best_cost(op, hw, backend, placement) == want
