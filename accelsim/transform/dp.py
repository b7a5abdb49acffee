"""Attention data parallelism (``--dp-attn``): each dp rank runs batch/dp of the sequences.

Every op but the routed experts shrinks to its rank's sequences (one each when the batch is
smaller than dp: the ranks past the batch idle, and the step is the busy ranks' step): activations, KV cache and
recurrent state lose (dp-1)/dp of their leading (token or sequence) axis, weights stay whole
(each rank holds the dense weights).  The routed experts are left whole here: expert
parallelism (``ep``) places them with the tokens of every dp rank, since the experts of a stage
serve all its sequences.
"""
from __future__ import annotations

import math
from dataclasses import replace

from accelsim.errors import AccelsimError
from accelsim.graph import Attention, Collective, Conv, Elementwise, Embedding, Graph, MatMul, Norm, Op, Scan
from accelsim.transform._common import EXPERT_ROLES, copy_graph, scaled


def data_parallel(graph: Graph, dp: int) -> Graph:
    if dp == 1:
        return graph
    if graph.batch is None:
        raise AccelsimError(f"--dp-attn {dp} splits the sequences of a step, but graph {graph.name!r} "
                            f"does not say its batch; use --dp-attn 1")
    if graph.batch % dp and graph.batch > dp:
        allowed = ", ".join(str(d) for d in range(1, graph.batch + 1) if graph.batch % d == 0)
        raise AccelsimError(f"--dp-attn {dp} must divide the batch ({graph.batch}) or exceed it: each "
                            f"attention data-parallel rank runs batch/dp sequences; allowed: {allowed} "
                            f"or more than {graph.batch}")
    # Fewer sequences than ranks (batch-1 decode at --dp-attn 8): the busy ranks run one
    # sequence each and the rest idle, as engines run them; every chip is costed as a busy one.
    local = max(1, graph.batch // dp)
    out = copy_graph(graph, (_rank_share(op, graph.batch // local) for op in graph))
    out.batch = local
    return out


def _rank_share(op: Op, dp: int) -> Op:
    if op.role in EXPERT_ROLES:
        return op

    def share(t):
        return t if t.role == "weight" else scaled(t, 1 / dp, axis=0)

    def fewer(n: int) -> int:
        return max(1, math.ceil(n / dp - 1e-9))

    changes: dict = {"inputs": tuple(share(t) for t in op.inputs),
                     "outputs": tuple(share(t) for t in op.outputs)}
    if isinstance(op, MatMul):
        # Chunked SSD matmuls batch (sequence, chunk) pairs in ``count``; every other matmul
        # has its tokens (or cached positions) as rows.
        if op.role == "scan":
            changes["count"] = fewer(op.count)
        else:
            changes["m"] = fewer(op.m)
        if op.rows is not None:
            changes["rows"] = fewer(op.rows)
    elif isinstance(op, (Attention, Scan, Conv)):
        changes["batch"] = fewer(op.batch)
    elif isinstance(op, Norm):
        changes["rows"] = fewer(op.rows)
    elif isinstance(op, Elementwise):
        changes["elements"] = fewer(op.elements)
    elif isinstance(op, Embedding) and op.role != "position_embedding":
        changes["tokens"] = fewer(op.tokens)
    elif not isinstance(op, (Embedding, Collective)):
        raise AccelsimError(f"--dp-attn cannot split {op.kind} op {op.name}; use --dp-attn 1")
    return replace(op, **changes)
