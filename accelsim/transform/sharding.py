"""``shard(graph, parallelism) -> Graph``: the share of a step one chip of each pipeline stage
runs, every chip of a stage running the same graph (so a stage is costed once and counted
``per_stage`` times).  The passes, each reading op roles:

1. attention data parallelism (``dp``): batch/dp sequences per rank, routed experts left whole;
2. tensor parallelism (``tp``, 1-D or 2-D): heads and matmul columns/rows split, collectives
   inserted;
3. expert placement (``ep``): the routed experts over the tp x dp chips, with their all-to-alls;
4. fewer all-reduces (``reductions``): partial sums weighted by the MoE combine and branches
   summed into one output (routed + shared experts, a parallel block) reduce once;
5. pipeline stages (``pp``) joined by sends.
"""
from __future__ import annotations

from accelsim.graph import Graph
from accelsim.transform.dp import data_parallel
from accelsim.transform.ep import expert_parallel
from accelsim.transform.layout import Parallelism
from accelsim.transform.pp import layer_stages, pipeline_sends
from accelsim.transform.reductions import merged_reductions
from accelsim.transform.tp import tensor_parallel
from accelsim.transform.tp2d import Grid


def shard(graph: Graph, parallelism: Parallelism) -> Graph:
    """One chip's share of ``graph`` (every pipeline stage, joined by sends)."""
    par = parallelism
    sharded = data_parallel(graph, par.dp)
    sharded = tensor_parallel(sharded, Grid(par.tp_x, par.tp_y, par.attention == "batch"))
    sharded = expert_parallel(sharded, par)
    sharded = merged_reductions(sharded)
    sharded = pipeline_sends(sharded, layer_stages(sharded, par.pp))
    sharded.name = f"{graph.name} [{par.describe()}]"
    return sharded
