"""Fewer all-reduces: partial sums are added (and weighted) before they are reduced, as engines do.

Runs after tensor and expert parallelism (``sharding.shard``), reading roles:

* **Through the MoE combine.**  The routed experts' partial sums (expert tensor parallelism,
  ``ep.py``) are weighted by the router's top-k gates and summed per token (role ``combine``,
  its other input made by role ``topk``, whole on every rank).  That weighted sum is linear in
  the partial sums, so it runs on them first and the all-reduce moves one row per token instead
  of top-k rows, as a fused MoE kernel returns one row per token before the layer reduces.
* **Branches summed into one output.**  An elementwise sum of branches that are each
  all-reduced over the same ranks (a parallel attention + MLP block's residual add; the routed
  experts plus the shared expert of a DeepSeek- or Qwen-MoE layer) adds the partial sums and
  all-reduces once (Megatron; Pope et al.), instead of once per branch.

Engines (sources): SGLang's ``DeepseekV2MoE.forward_normal`` adds the shared expert's output to
the routed experts' and calls ``tensor_model_parallel_all_reduce`` once, its shared-expert MLP
built with ``reduce_results=False`` (sgl-project/sglang, python/sglang/srt/models/deepseek_v2.py
at commit 00114aef19bbb7431b9cfc5a77dce64b9c53ed95); vLLM builds the shared experts with
``reduce_results=False`` and hands them to the fused MoE layer, which reduces routed + shared
once (vllm-project/vllm, vllm/model_executor/models/deepseek_v2.py at commit
002d6073aa034d4f5545d45021b0e56d1f3c3593); TensorRT-LLM's ``Deepseekv3MoE.forward`` adds
``shared_output + routed_output`` and all-reduces once when attention is not data-parallel, its
fused MoE built with ``reduce_results=False`` and its shared expert with ``reduce_output=False``
(NVIDIA/TensorRT-LLM, tensorrt_llm/_torch/models/modeling_deepseekv3.py at commit
000561df0bd751d793257102bbe59cb4a64b2fd5).  Where experts come back by an all-to-all or a
reduce-scatter (under ``--dp-attn``), nothing here applies: only all-reduces merge.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import replace

from accelsim.graph import Collective, Elementwise, Graph, Op
from accelsim.transform._common import renamed, summed

# The role of a weighted sum of routed rows (the MoE combine) and the role of its weights.
_WEIGHTED_SUM_ROLE = "combine"
_WEIGHT_ROLE = "topk"
# The roles of the elementwise ops that sum their inputs (a residual add, the hybrid mixers'
# sum, routed + shared experts): only a sum may add partial sums before their reduction.
_SUM_ROLES = ("residual", "combine")


def merged_reductions(graph: Graph) -> Graph:
    return _merged_branches(_reduced_after_combine(graph))


def _all_reduces(graph: Graph) -> dict[str, Collective]:
    """Each single-input all-reduce, by the name of the tensor it writes."""
    return {op.outputs[0].name: op for op in graph
            if isinstance(op, Collective) and op.pattern == "all_reduce" and len(op.inputs) == 1}


def _readers(graph: Graph) -> dict[str, int]:
    readers: dict[str, int] = defaultdict(int)
    for op in graph:
        for t in op.inputs:
            readers[t.name] += 1
    return readers


def _rebuilt(graph: Graph, dropped: set[str], rewrites: dict[str, list[Op]]) -> Graph:
    """``graph`` without the ``dropped`` ops, each op named in ``rewrites`` replaced by its ops."""
    out = Graph(name=graph.name, batch=graph.batch)
    for op in graph:
        if op.name not in dropped:
            for new in rewrites.get(op.name, (op,)):
                out.add(new)
    return out


def _reduced_after_combine(graph: Graph) -> Graph:
    """Move the all-reduce of the routed experts' partial sums past the gate-weighted combine."""
    reduced, readers = _all_reduces(graph), _readers(graph)
    producer_role = {t.name: op.role for op in graph for t in op.outputs}
    moves: dict[str, tuple[Collective, Op]] = {}  # combine op name -> (the all-reduce it takes over, it)
    for op in graph:
        if not isinstance(op, Elementwise) or op.role != _WEIGHTED_SUM_ROLE:
            continue
        partial = [reduced[t.name] for t in op.inputs if t.name in reduced and readers[t.name] == 1]
        weights = [t for t in op.inputs if t.name not in reduced]
        if len(partial) == 1 and weights and all(producer_role.get(t.name) == _WEIGHT_ROLE
                                                 for t in weights):
            moves[op.name] = (partial[0], op)
    if not moves:
        return graph
    return _rebuilt(graph, {c.name for c, _ in moves.values()},
                    {name: _combined_then_reduced(op, c) for name, (c, op) in moves.items()})


def _combined_then_reduced(op: Op, c: Collective) -> list[Op]:
    """The combine on the partial sums ``c`` reduced, then ``c`` on its (one row a token) output."""
    y = summed(op.outputs[0])
    partial_out = renamed(y, f"{y.name}.partial")
    inputs = tuple(c.inputs[0] if t.name == c.outputs[0].name else t for t in op.inputs)
    return [replace(op, inputs=inputs, outputs=(partial_out, *op.outputs[1:])),
            replace(c, name=f"{op.name}.all_reduce", inputs=(partial_out,), outputs=(y,),
                    layer=op.layer)]  # same group, grid and span


def _same_ranks(branches: list[Collective]) -> bool:
    return len({(c.group, c.grid, c.span) for c in branches}) == 1


def _merged_branches(graph: Graph) -> Graph:
    """Branches summed into one output add their partial sums first and all-reduce once."""
    reduced, readers = _all_reduces(graph), _readers(graph)
    merges: dict[str, tuple[list[Collective], Elementwise]] = {}
    for op in graph:
        if not isinstance(op, Elementwise) or op.role not in _SUM_ROLES:
            continue
        branches = [reduced[t.name] for t in op.inputs if t.name in reduced and readers[t.name] == 1]
        if len(branches) > 1 and _same_ranks(branches):
            merges[op.name] = (branches, op)
    if not merges:
        return graph
    dropped = {c.name for branches, _ in merges.values() for c in branches}
    return _rebuilt(graph, dropped, {name: _summed_then_reduced(op, branches)
                                     for name, (branches, op) in merges.items()})


def _summed_then_reduced(op: Elementwise, branches: list[Collective]) -> list[Op]:
    """The sum ``op`` of the all-reduced ``branches`` (and whole inputs) as: the branches'
    partial sums added, one all-reduce, then the rest of the sum."""
    partials = tuple(c.inputs[0] for c in branches)
    merged = {c.outputs[0].name for c in branches}
    rest = tuple(t for t in op.inputs if t.name not in merged)
    if not rest:  # the op is the branch sum itself (routed + shared experts): sum, then reduce
        y = op.outputs[0]
        partial_sum = renamed(summed(y), f"{y.name}.partial")
        return [replace(op, inputs=partials, outputs=(partial_sum, *op.outputs[1:])),
                replace(branches[0], name=f"{op.name}.all_reduce", inputs=(partial_sum,),
                        outputs=(summed(y),), layer=op.layer)]
    # A residual add of whole and reduced inputs: the branches' partials first, one
    # all-reduce, then the add of the whole inputs and the reduced sum.
    partial_sum = renamed(partials[0], f"{op.name}.partial_sum")
    total = renamed(branches[0].outputs[0], f"{op.name}.branch_sum")
    return [Elementwise(f"{op.name}.partials", partials, (partial_sum,), layer=op.layer,
                        role="residual", elements=partial_sum.elements,
                        ops_per_element=len(partials) - 1.0),
            replace(branches[0], name=f"{op.name}.all_reduce", inputs=(partial_sum,),
                    outputs=(total,), layer=op.layer),  # same group, grid and span
            replace(op, inputs=(*rest, total), ops_per_element=float(len(rest)))]
