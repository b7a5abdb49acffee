"""MoE weight traffic follows the expected distinct experts on every backend (issue 14).

A decode step of B tokens, each routed to k of E experts, touches E(1 - (1 - k/E)^B) experts on
average, so its expert GEMMs read that share of the stacked expert weights.  The graph says so
(``MatMul.b_fraction``, ``Op.reads``); every backend's byte count must come from those reads.
Before the fix the GPU and systolic backends read every expert at any batch (Mixtral-8x7B
layer 0 ``experts.up``: 939.5 MB at batch 1 instead of 234.9 MB).
"""
from __future__ import annotations

import math
import re

import pytest

import accelsim
from accelsim import hardware
from accelsim.hardware import load_hardware
from accelsim.model.blocks.moe import expected_distinct_experts
from accelsim.model.lower import lower
from accelsim.model.spec import load_model
from accelsim.workload import Workload

EXPERT_OP = re.compile(r"\.moe\.experts\.(up|down)\b")
CONTEXT = 16


def _hardwired_mixtral():
    """The bundled hardwired chip with Mixtral's weights in its silicon instead of Llama's."""
    chip = load_hardware("hardwired-llama-3.1-8b")
    return chip.model_copy(update={"name": "hardwired-mixtral-8x7b",
                                   "hardwired": chip.hardwired.model_copy(update={"model": "mixtral-8x7b"})})


# (chip, the memory level its weights are read from)
CHIPS = {
    "gpu": (lambda: load_hardware("h200"), "hbm"),
    "systolic": (lambda: load_hardware("tpu-v5p"), "hbm"),
    "hardwired": (_hardwired_mixtral, "rom"),
    "dataflow": (lambda: load_hardware("cerebras-wse3"), "sram"),
}


def _expert_bytes(kind: str, batch: int) -> tuple[float, float]:
    """(expert-weight bytes one pass of the step reads on ``kind``, expected_distinct(b)/E of
    the expert weights for the pass's b tokens), summed over every layer's expert GEMMs.

    ``Result.ops`` cost one group of users in flight: a pipeline (a hardwired chip's layers,
    dataflow stages) passes ``result.groups`` groups of ceil(B / groups) users, each reading
    the experts its own tokens touch."""
    make, level = CHIPS[kind]
    chip = make()
    assert chip.kind == kind
    spec = load_model("mixtral-8x7b")
    workload = Workload("decode", batch, 1, CONTEXT)
    result = accelsim.simulate(spec, chip, workload, weight_dtype="fp8", kv_dtype="fp8")
    read = sum(c.bytes.get(level, 0.0) for c in result.ops if EXPERT_OP.search(c.op))
    weight_dtype = hardware.backend(chip).forced_weight_dtype(chip) or "fp8"
    graph = lower(spec.with_dtypes(weight=weight_dtype, kv="fp8"), workload)
    moe = spec.moe
    tokens = math.ceil(batch / result.groups)
    share = expected_distinct_experts(moe.num_experts, moe.top_k, tokens) / moe.num_experts
    expected = sum(op.inputs[1].nbytes for op in graph if EXPERT_OP.search(op.name)) * share
    return read, expected


@pytest.mark.parametrize("kind", sorted(CHIPS))
def test_batch_one_decode_reads_about_two_of_eight_experts(kind):
    read, expected = _expert_bytes(kind, 1)
    assert expected > 0
    assert read == pytest.approx(expected, rel=0.01)


@pytest.mark.parametrize("kind", sorted(CHIPS))
def test_batch_64_decode_reads_about_every_expert(kind):
    read, expected = _expert_bytes(kind, 64)
    assert read == pytest.approx(expected, rel=0.01)


@pytest.mark.parametrize("kind", ["gpu", "systolic"])
def test_batch_64_on_one_chip_reads_every_expert_once(kind):
    """One pass of 64 tokens touches all 8 experts (8 (1 - (6/8)^64) = 8.0 to 8 digits)."""
    read, _ = _expert_bytes(kind, 64)
    one, _ = _expert_bytes(kind, 1)
    assert read == pytest.approx(4 * one, rel=0.01)


def test_mixtral_layer0_up_on_h200_reads_a_quarter_of_its_experts():
    """The issue's own numbers: 939.5 MB of experts, 2 of 8 touched at batch 1."""
    result = accelsim.simulate("mixtral-8x7b", "h200", Workload("decode", 1, 1, CONTEXT),
                               weight_dtype="fp8", kv_dtype="fp8")
    up = next(c for c in result.ops if c.op == "layers.0.moe.experts.up")
    assert up.bytes["hbm"] == pytest.approx(939.5e6 / 4, rel=0.01)


def test_fast_path_terms_read_the_touched_experts():
    """The vectorised DSE path calls the same ``terms`` over arrays of design points: the
    expert GEMM's HBM bytes at two L2 sizes are the touched share too."""
    import numpy as np

    from accelsim.dse.columns import spec_columns
    chip = load_hardware("h200")
    kind = hardware.backend(chip)
    spec = load_model("mixtral-8x7b").with_dtypes(weight="fp8", kv="fp8")
    graph = lower(spec, Workload("decode", 1, 1, CONTEXT))
    op = next(o for o in graph if o.name == "layers.0.moe.experts.up")
    l2 = chip.memory.l2.model_dump()
    sizes = [dict(l2, capacity=c) for c in (chip.memory.l2.capacity, 2 * chip.memory.l2.capacity)]
    memory = [chip.memory.model_copy(update={"l2": chip.memory.l2.model_copy(update={"capacity": c["capacity"]})})
              for c in sizes]
    view = spec_columns(chip, {"memory": (memory, np.arange(2))}, 2)
    placement = kind.allocate(kind.demand(graph, chip, spec, None), chip)
    placement = placement.__class__(placement.level_of, placement.footprint,
                                    {k: np.full(2, v) for k, v in placement.capacity.items()})
    mapping = kind.mappings(op, chip)[0]
    t = kind.terms(op, mapping, view, kind.params(view), placement)
    assert np.allclose(t.bytes["hbm"], op.inputs[1].nbytes / 4, rtol=0.01)


def test_long_prefill_expert_gemm_reads_each_expert_and_its_tokens_once():
    """A grouped GEMM's experts share no operand, so the L2 reuse rule holds per expert: at a
    Mixtral-8x7B prefill of 8 x 4096 tokens on an H200 one expert's rows (~8,192 x 4,096 bf16,
    67 MB) and its slice of the up weight (4,096 x 28,672 fp8, 117 MB) stream through once, so
    the GEMM moves at most its operands and output once each.  Counting the eight experts'
    537 MB of rows against their 940 MB of weights as one GEMM re-read every row once per
    25 MB half-L2 slice of all the weights: 38 times, ~21 GB."""
    spec = load_model("mixtral-8x7b").with_dtypes(weight="fp8", kv="fp8")
    workload = Workload("prefill", 8, 4096, 0)
    result = accelsim.simulate(spec, "h200", workload)
    up = next(c for c in result.ops if c.op == "layers.0.moe.experts.up")
    op = next(o for o in lower(spec, workload) if o.name == "layers.0.moe.experts.up")
    once = sum(a.nbytes for a in (*op.reads(), *op.writes()))
    assert op.count == 8
    assert 0 < up.bytes["hbm"] <= once * (1 + 1e-9)
