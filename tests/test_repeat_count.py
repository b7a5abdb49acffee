"""Repeated layers held as counts (``Graph.defer``: lowering defers the copied decoder layers,
fusion keeps their kernels deferred, the mapper, the footprint walks and the joined graph read
them without making ops) must give exactly what the expanded graph gives: every figure of the
``Result`` and every op row, and the same ops wherever a graph's op list is read (the engine's
joined graph, a tensor- or pipeline-parallel split, a hardwired chip's regions)."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accelsim import hardware, pipeline
from accelsim.errors import AccelsimError
from accelsim.model.lower import lower
from accelsim.model.spec import load_model
from accelsim.transform import Parallelism, fuse
from accelsim.workload import Workload

# dense, tied embeddings, hybrids (Jamba: attention + Mamba + MoE; Gemma: sliding windows;
# RecurrentGemma), MoE (Mixtral, Qwen3, gpt-oss), MLA + MoE with dense first layers (DeepSeek-V3)
MODELS = ["llama-3.1-8b", "llama-3.2-1b", "jamba-v0.1", "gemma-2-9b", "gemma-3-1b", "recurrentgemma-2b",
          "mixtral-8x7b", "qwen3-235b-a22b", "gpt-oss-120b", "deepseek-v3", "mamba2-2.7b"]
# every kind: gpu, systolic (TPU), hardwired, dataflow (SRAM-only), ternary FPGA
CHIPS = ["h100-sxm", "b200", "tpu-v5p", "hardwired-llama-3.1-8b", "groq-lpu", "cerebras-wse3", "sn40l",
         "fpga-ternary-mmfree"]
LAYOUTS = [{}, {"tp": 2}, {"pp": 2}, {"tp": 2, "ep": 2}, {"tp": 4, "tp_x": 2},
           {"tp": 2, "dp": 2, "attention": "batch"}]


def _step(model: str, chip: str, workload: Workload, layout: dict, deferred: bool, formats: dict):
    """The step through the one pipeline, its graphs lowered with or without deferred layers;
    a refusal as its message."""
    spec, hw = load_model(model), hardware.load_hardware(chip)
    typed = pipeline.typed_model(spec, hw, weight=formats.get("weight"), kv=formats.get("kv"))
    try:
        return pipeline.run(typed.name, lambda w: lower(typed, w, deferred=deferred), hw, workload, typed,
                            Parallelism(**layout) if layout else None)
    except AccelsimError as e:
        return str(e)


def _same(model: str, chip: str, workload: Workload, layout: dict, formats: dict) -> None:
    held = _step(model, chip, workload, layout, True, formats)
    expanded = _step(model, chip, workload, layout, False, formats)
    if isinstance(expanded, str):
        assert held == expanded
        return
    assert not isinstance(held, str), held
    assert held.result == expanded.result  # every figure, note and op row
    assert [c.op for c in held.result.ops] == [c.op for c in expanded.result.ops]
    assert held.graph.name == expanded.graph.name and held.graph.ops == expanded.graph.ops


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(model=st.sampled_from(MODELS), chip=st.sampled_from(CHIPS), layout=st.sampled_from(LAYOUTS),
       phase=st.sampled_from(["decode", "prefill"]), batch=st.integers(1, 24), length=st.integers(1, 3000),
       weight=st.sampled_from([None, "fp8"]), kv=st.sampled_from([None, "fp8"]))
def test_held_and_expanded_layers_give_the_same_step(model, chip, layout, phase, batch, length, weight, kv):
    workload = (Workload(phase="decode", batch=batch, context=length) if phase == "decode"
                else Workload(phase="prefill", batch=batch, prompt=length))
    _same(model, chip, workload, layout, {"weight": weight, "kv": kv})


@pytest.mark.parametrize("model,chip,layout", [
    ("llama-3.1-8b", "h100-sxm", {}), ("llama-3.1-8b", "tpu-v5p", {"tp": 2}),
    ("llama-3.1-8b", "hardwired-llama-3.1-8b", {}), ("gemma-3-1b", "groq-lpu", {}),
    ("jamba-v0.1", "h100-sxm", {"tp": 2}), ("deepseek-v3", "b200", {"tp": 8, "ep": 8}),
    ("gemma-2-9b", "h100-sxm", {"pp": 2}), ("llama-3.2-1b", "cerebras-wse3", {}),
])
def test_each_kind_and_layout_gives_the_same_step(model, chip, layout):
    _same(model, chip, Workload(phase="decode", batch=3, context=1000), layout, {})


@pytest.mark.parametrize("model", ["llama-3.1-8b", "jamba-v0.1", "deepseek-v3", "gemma-3-1b", "llama-3.2-1b"])
@pytest.mark.parametrize("phase", ["decode", "prefill"])
def test_a_held_graph_and_its_kernels_are_the_expanded_ones(model, phase):
    spec = load_model(model)
    workload = Workload(phase=phase, batch=2, context=700) if phase == "decode" else \
        Workload(phase=phase, batch=2, prompt=300)
    held, expanded = lower(spec, workload), lower(spec, workload, deferred=False)
    assert held.deferred or spec.num_layers <= 2 or len(set(spec.layer_kinds)) == spec.num_layers
    # read without making the ops: what the one-chip stages read
    assert len(held) == len(expanded) and held.originals() == expanded.originals()
    assert held.labels() == [(op.name, op.layer) for op in expanded.ops]
    assert list(held.weight_sizes()) == list(expanded.weights())
    assert held.weight_bytes == expanded.weight_bytes and held.param_count == expanded.param_count
    fused_held, fused_expanded = fuse(held), fuse(expanded)
    assert fused_held.labels() == [(op.name, op.layer) for op in fused_expanded.ops]
    assert fused_held.weight_bytes == fused_expanded.weight_bytes
    assert fused_held.originals() == fused_expanded.originals()
    # made when asked for: the same ops, the same dependencies
    assert fused_held.ops == fused_expanded.ops and not fused_held.deferred
    assert held.ops == expanded.ops and not held.deferred
    assert held._edges == expanded._edges


def test_a_deferred_part_must_copy_made_ops_with_new_names():
    spec = load_model("llama-3.2-1b")
    graph = lower(spec, Workload(phase="decode", batch=1, context=10))
    at, part = graph.parts()[0]
    with pytest.raises(ValueError, match="duplicate op name"):
        graph.defer(part, graph.originals()[at:at + part.count])
