"""Routed experts on the tp x dp chips of a pipeline stage (expert parallelism, ``--ep``).

The E experts split over ``ep`` groups: each chip holds E/ep of them, and each of those is
tensor-split over the etp = (tp x dp)/ep chips of its group (columns of the up projection, rows
of the down projection), as vLLM and SGLang place experts on the chips that split attention.
``--ep 1`` on tp x dp > 1 chips is pure expert tensor parallelism (etp = every chip).

Tokens: the experts serve the whole stage's tokens (every dp rank's sequences), so the rows a
chip computes are tokens x top_k / ep, and the expected distinct experts it touches are its
share, touched/ep, of those the whole batch touches (each expert is touched with the same
probability): ``MatMul.b_fraction``, the fraction of the chip's own stacked expert weight read,
stays touched/E.

Communication, per chip:
* ep > 1, dp > 1: an all_to_all among the stage's chips dispatches the routed rows to their
  experts before the up projection, and one combines the results after the down projection
  (partial sums, in at least 16 bits, when etp > 1).  Each chip's payload is its local rows.
* ep > 1, dp = 1 (``--tp 8 --ep 8``): every chip already holds every token (attention is split
  by heads, its output all-reduced), so nothing is dispatched: each chip runs its own experts on
  the rows routed to them and the partial sums are all-reduced over tp, as with ep = 1.
  Engines run it so: vLLM uses all-to-all kernels only with attention data parallelism
  (``FusedMoEParallelConfig.use_all2all_kernels``: ``use_ep and dp_size > 1``, otherwise the
  MoE's final all-reduce sums the experts' partial outputs; vllm-project/vllm,
  vllm/model_executor/layers/fused_moe/config.py at commit
  002d6073aa034d4f5545d45021b0e56d1f3c3593), and SGLang's ``forward_normal`` (no DeepEP)
  all-reduces routed + shared once.  That all-reduce then merges with the shared expert's
  (``reductions``).
* ep = 1, dp > 1: every chip computes a slice of every expert for all tokens: an all_gather of
  the tokens over dp before, a reduce_scatter of the partial sums after.  Both move tokens, not
  routed rows: each chip routes the gathered tokens to its expert slices itself, and sums each
  token's top-k partial outputs (a weighted sum, linear) before the reduce_scatter, as a fused
  MoE kernel returns one row per token (source: SGLang's expert-parallelism docs,
  docs.sglang.io/advanced_features/expert_parallelism.html: without an all-to-all backend
  "All-Reduce or All-Gather for token dispatch"; vLLM's fused_moe sums each token's top-k
  outputs before it returns).
* ep = 1, dp = 1: the tokens are already on every tp rank; the partial sums all-reduce over tp.
"""
from __future__ import annotations

import math
from dataclasses import replace

from accelsim.errors import AccelsimError
from accelsim.graph import Collective, Elementwise, Graph, MatMul, Op, Tensor
from accelsim.transform._common import copy_graph, renamed, scaled, summed
from accelsim.transform.layout import Parallelism


def expert_parallel(graph: Graph, par: Parallelism) -> Graph:
    if par.per_stage == 1:
        return graph
    ops: list[Op] = []
    tokens: dict[int | None, Tensor] = {}  # layer -> the MoE's input tokens (the dispatch's input)
    for op in graph:
        if op.role == "dispatch":
            tokens[op.layer] = op.inputs[0]
        if op.role == "expert_up":
            ops += _expert_up(op, par, tokens.get(op.layer))
        elif op.role == "expert_act":
            ops.append(_expert_act(op, par))
        elif op.role == "expert_down":
            ops += _expert_down(op, par, tokens.get(op.layer))
        else:
            ops.append(op)
    return copy_graph(graph, ops)


def _experts(op: MatMul, par: Parallelism) -> int:
    w = op.inputs[1]
    experts = w.shape[0]  # the expert axis of the stacked (experts, in, out) weight
    if experts % par.ep:
        allowed = ", ".join(str(d) for d in range(1, par.per_stage + 1)
                            if par.per_stage % d == 0 and experts % d == 0)
        raise AccelsimError(f"--ep {par.ep} must divide the {experts} experts of {op.name} (and "
                            f"the tp x dp = {par.per_stage} chips of a stage); allowed: {allowed}")
    return experts


def _local_gemms(op: MatMul, par: Parallelism, experts: int) -> dict:
    """count / m / rows of the chip's share of the expert GEMMs."""
    rows_total = op.rows if op.rows is not None else op.count * op.m
    rows = math.ceil(rows_total / par.ep)
    local_experts = experts // par.ep
    touched = op.b_fraction * experts / par.ep  # expected distinct local experts touched
    count = min(local_experts, max(1, math.ceil(touched - 1e-9)))
    return {"count": count, "m": math.ceil(rows / count), "rows": rows}


def _expert_up(op: Op, par: Parallelism, tokens: Tensor | None = None) -> list[Op]:
    assert isinstance(op, MatMul)
    experts = _experts(op, par)
    etp = par.expert_tp
    a, w, y = op.inputs[0], op.inputs[1], op.outputs[0]
    gemms = _local_gemms(op, par, experts)
    rows = gemms["rows"]
    ops: list[Op] = []
    a_local = Tensor(a.name, (rows, a.shape[-1]), a.dtype, a.role)
    if par.ep > 1 and par.dp > 1:  # routed rows cross to the chips that hold their experts
        received = renamed(a_local, f"{a.name}.dispatched")
        ops.append(Collective(f"{op.name}.dispatch", (a_local,), (received,), layer=op.layer,
                              role="collective", pattern="all_to_all", group=par.per_stage))
        a_local = received
    elif par.dp > 1:  # every chip needs every dp rank's tokens (then routes them itself)
        gathered = renamed(a_local, f"{a.name}.gathered")
        own = tokens if tokens is not None else scaled(a_local, 1 / par.dp, axis=0)
        everyone = Tensor(gathered.name, (own.shape[0] * par.dp, *own.shape[1:]), own.dtype, own.role)
        ops.append(Collective(f"{op.name}.gather", (own,), (everyone,),
                              layer=op.layer, role="collective", pattern="all_gather", group=par.dp))
        a_local = gathered
    w_local = scaled(scaled(w, 1 / par.ep, axis=0), 1 / etp)
    n = math.ceil(op.n / etp - 1e-9)
    extras = tuple(scaled(scaled(t, 1 / par.ep, axis=0), 1 / etp) if t.role == "weight" else t
                   for t in op.inputs[2:])
    y_local = Tensor(y.name, (rows, n), y.dtype, y.role)
    ops.append(replace(op, inputs=(a_local, w_local, *extras), outputs=(y_local,), n=n, replicas=1,
                       **gemms))
    return ops


def _expert_act(op: Op, par: Parallelism) -> Op:
    assert isinstance(op, Elementwise)
    etp = par.expert_tp

    def share(t: Tensor) -> Tensor:
        if t.role != "activation":
            return t
        return scaled(scaled(t, 1 / par.ep, axis=0), 1 / etp)

    outputs = tuple(share(t) for t in op.outputs)
    return replace(op, inputs=tuple(share(t) for t in op.inputs), outputs=outputs,
                   elements=outputs[0].elements, replicas=1)


def _expert_down(op: Op, par: Parallelism, tokens: Tensor | None = None) -> list[Op]:
    assert isinstance(op, MatMul)
    experts = _experts(op, par)
    etp = par.expert_tp
    a, w, y = op.inputs[0], op.inputs[1], op.outputs[0]
    gemms = _local_gemms(op, par, experts)
    rows = gemms["rows"]
    k = math.ceil(op.k / etp - 1e-9)
    a_local = Tensor(a.name, (rows, k), a.dtype, a.role)
    w_local = scaled(scaled(w, 1 / par.ep, axis=0), 1 / etp, axis=-2)
    extras = tuple(scaled(t, 1 / par.ep, axis=0) if t.role == "weight" else t for t in op.inputs[2:])
    partial = Tensor(f"{y.name}.local", (rows, y.shape[-1]), y.dtype, y.role)
    if etp > 1 or par.dp == 1:  # partial sums of each token's output, reduced across chips
        partial = summed(partial)
    body = replace(op, inputs=(a_local, w_local, *extras), outputs=(partial,), k=k, replicas=1, **gemms)
    # The tokens' home ranks read the result under its own name, as many rows as they hold
    # (every dp rank's share when dp > 1 is undone here: the consumer was split by dp).
    home_rows = math.ceil((op.rows if op.rows is not None else op.count * op.m) / par.dp)
    home = Tensor(y.name, (home_rows, y.shape[-1]), partial.dtype, y.role)
    if par.ep > 1 and par.dp > 1:
        back = Collective(f"{op.name}.combine", (partial,), (home,), layer=op.layer, role="collective",
                          pattern="all_to_all", group=par.per_stage)
    elif par.dp > 1:
        # Each token's k partial rows are summed on the chip first: the scatter moves tokens.
        sent, kept = partial, home
        if tokens is not None:
            sent = Tensor(partial.name, (tokens.shape[0] * par.dp, y.shape[-1]), partial.dtype, partial.role)
            kept = Tensor(y.name, (tokens.shape[0], y.shape[-1]), partial.dtype, y.role)
        back = Collective(f"{op.name}.reduce_scatter", (sent,), (kept,), layer=op.layer,
                          role="collective", pattern="reduce_scatter", group=par.per_stage)
    else:  # the tp ranks all hold every token: their experts' partial sums are all-reduced
        back = Collective(f"{op.name}.all_reduce", (partial,), (home,), layer=op.layer,
                          role="collective", pattern="all_reduce", group=par.tp,
                          grid=(1, par.tp), span="y")
    return [body, back]
