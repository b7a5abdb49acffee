"""Pipelines split by bytes, for SRAM-only chips (dataflow: Cerebras, Groq): lay the ops end
to end by the bytes they keep resident and cut the line into equal parts, one chip each."""
from __future__ import annotations

import math
from dataclasses import replace

from accelsim.graph import Attention, Embedding, Graph, MatMul, Op, Tensor
from accelsim.transform._common import PER_HEAD_ROLES, scaled, scaled_axis_of, weight_of
from accelsim.transform.pp import pipeline_sends, stage_graphs


def resident_bytes(graph: Graph) -> list[float]:
    """Bytes each op keeps resident on its chip: its weights plus the KV cache / recurrent
    state it reads and writes, each counted once.  A weight two ops share (a tied embedding and
    LM head, at opposite ends of the pipeline) is counted at each, since each end's chips hold
    their own copy."""
    seen: set[tuple[str, str]] = set()
    sizes = []
    for op in graph:
        size = 0.0
        for t in (*op.inputs, *op.outputs):
            key = (t.name, op.kind if t.role == "weight" else "")
            if t.role in ("weight", "kv_cache", "state") and key not in seen:
                seen.add(key)
                size += t.nbytes
        sizes.append(size)
    return sizes


def _piece(op: Op, lo: float, hi: float, index: int, last: bool) -> Op | None:
    """The [lo, hi) fraction of an op's output columns (matmul, embedding) or sequences
    (attention); None when the op cannot be cut there (it then stays whole)."""
    def cut(t: Tensor, size: int, axis: int) -> Tensor:
        shape = list(t.shape)
        shape[axis] = size
        name = t.name if (last or t.role != "activation" or t not in op.outputs) else f"{t.name}@{index}"
        if t.role == "weight" and not last:
            name = f"{t.name}@{op.kind}{index}"
        return Tensor(name, tuple(shape), t.dtype, t.role)

    if isinstance(op, MatMul) and weight_of(op) is not None and op.role not in PER_HEAD_ROLES:
        n = round(hi * op.n) - round(lo * op.n)
        w = op.inputs[1]
        return replace(op, name=f"{op.name}@{index}", n=n,
                       inputs=(op.inputs[0], cut(w, n, -1), *(cut(t, n, -1) for t in op.inputs[2:])),
                       outputs=tuple(cut(t, n, -1) for t in op.outputs)) if n else None
    if isinstance(op, Embedding):
        dim = round(hi * op.dim) - round(lo * op.dim)
        return replace(op, name=f"{op.name}@{index}", dim=dim,
                       inputs=(cut(op.inputs[0], dim, -1), *op.inputs[1:]),
                       outputs=tuple(cut(t, dim, -1) for t in op.outputs)) if dim else None
    if isinstance(op, Attention) and op.batch > 1:
        batch = round(hi * op.batch) - round(lo * op.batch)
        rows = batch * op.q_len
        def part(t: Tensor) -> Tensor:
            return cut(t, batch if t.role == "kv_cache" else rows, 0)
        return replace(op, name=f"{op.name}@{index}", batch=batch,
                       inputs=tuple(part(t) for t in op.inputs),
                       outputs=tuple(part(t) for t in op.outputs)) if batch else None
    if isinstance(op, Attention) and op.kv_heads > 1:
        kv = round(hi * op.kv_heads) - round(lo * op.kv_heads)
        f = kv / op.kv_heads
        def heads_part(t: Tensor) -> Tensor:
            share = (scaled_axis_of(t, op.kv_heads, f) if t.role == "kv_cache" else scaled(t, f))
            return cut(share, share.shape[-1], -1)
        return replace(op, name=f"{op.name}@{index}", kv_heads=kv, heads=op.heads // op.kv_heads * kv,
                       inputs=tuple(heads_part(t) for t in op.inputs),
                       outputs=tuple(heads_part(t) for t in op.outputs)) if kv else None
    return None


def byte_stages(graph: Graph, chips: int) -> list[Graph]:
    """Lay the ops end to end by resident bytes and cut the line into ``chips`` equal parts, one
    chip each; an op that straddles a cut is split at it (columns of a matmul or embedding,
    sequences of attention) so every chip holds total/chips bytes.  Sends join the chips."""
    sizes = resident_bytes(graph)
    budget = sum(sizes) / chips if sum(sizes) else 1.0
    pieces: list[Op] = []
    stages: list[int] = []
    position = 0.0
    for op, size in zip(graph, sizes):
        first = min(int(position // budget), chips - 1)
        end = position + size
        last = min(max(first, math.ceil(end / budget) - 1), chips - 1)
        cut = [_piece(op, (max(position, c * budget) - position) / size,
                      (min(end, (c + 1) * budget) - position) / size, c, c == last)
               for c in range(first, last + 1)] if last > first else []
        whole = [p for p in cut if p is not None]
        if cut and len(whole) == len(cut):
            for chip, p in zip(range(first, last + 1), whole):
                pieces.append(p)
                stages.append(max(chip, stages[-1] if stages else 0))
        else:
            pieces.append(op)
            stages.append(max(first, stages[-1] if stages else 0))
        position = end
    line = Graph(name=graph.name, batch=graph.batch)
    for op in pieces:
        line.add(op)
    return stage_graphs(pipeline_sends(line, stages))
