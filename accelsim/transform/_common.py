"""Helpers every transform shares: tensors resized to a chip's share, and the op roles that
decide how each op splits.  Transforms read roles (``Op.role``), never shapes, to tell what an
op is; shapes only say how big the share is."""
from __future__ import annotations

import math
from dataclasses import replace

from accelsim.dtypes import reduction_dtype
from accelsim.graph import Graph, MatMul, Op, Tensor

# Weight matmuls split by output columns when their input is whole on every tensor-parallel
# rank (Megatron's column-parallel linears); the heads or channels they produce stay split
# until a matmul reading them splits by rows and all-reduces.
COLUMN_ROLES = frozenset({"qkv", "q", "kv", "q_b", "kv_b", "gate_up", "shared_up", "in_proj",
                          "dt_proj", "lora_up", "lm_head"})
# Per-head (or per-block) batched matmuls: ``count`` GEMMs, one per head, each with its own
# slice of the weight.  Under tensor parallelism the heads split: count and the weight slice
# shrink, k and n do not (MLA's absorbed W_UK / W_UV, RG-LRU's block-diagonal gates).
PER_HEAD_ROLES = frozenset({"q_absorb", "v_absorb", "head_gate"})
# Routed experts: placed by expert parallelism (ep.py); tensor parallelism leaves them alone.
EXPERT_ROLES = frozenset({"expert_up", "expert_act", "expert_down"})
# Multi-head latent attention: no 2-D weight-stationary layout for it here.
MLA_ROLES = frozenset({"q_a", "kv_a", "q_absorb", "v_absorb", "kv_b"})
# Ops that need every row of their sequences (recurrences, convolutions over time).
SEQUENTIAL_ROLES = frozenset({"scan", "conv", "head_gate"})
# Activations, a gated one halving its input (gate and up side by side).
ACTIVATION_ROLES = frozenset({"act", "expert_act", "shared_act"})


def scaled(t: Tensor, ratio: float, axis: int = -1) -> Tensor:
    shape = list(t.shape)
    shape[axis] = max(1, math.ceil(shape[axis] * ratio - 1e-9))
    return Tensor(t.name, tuple(shape), t.dtype, t.role)


def renamed(t: Tensor, name: str) -> Tensor:
    return Tensor(name, t.shape, t.dtype, t.role)


def summed(t: Tensor) -> Tensor:
    """``t`` as partial sums and their reduction carry it: at least 16 bits."""
    return Tensor(t.name, t.shape, reduction_dtype(t.dtype), t.role)


def scaled_axis_of(t: Tensor, size: int, ratio: float) -> Tensor:
    """Scale the axis of ``t`` that has ``size`` (the heads or channels axis; the leading batch
    axis is skipped); the last axis when none matches.  Only the element count matters."""
    axis = next((i for i in range(1, len(t.shape)) if t.shape[i] == size), -1)
    return scaled(t, ratio, axis)


def weight_of(op: MatMul) -> Tensor | None:
    return op.inputs[1] if len(op.inputs) > 1 and op.inputs[1].role == "weight" else None


def local_count(n: int, ratio: float) -> int:
    return max(1, math.ceil(n * ratio - 1e-9))


def copy_graph(graph: Graph, ops) -> Graph:
    out = Graph(name=graph.name, batch=graph.batch)
    for op in ops:
        out.add(op)
    return out


def replicated(op: Op, copies: int) -> Op:
    return op if copies == op.replicas else replace(op, replicas=copies)
