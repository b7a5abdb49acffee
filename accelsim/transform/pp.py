"""Pipeline parallelism: layers go to ``pp`` contiguous stages (embedding with the first, the
head with the last), and a ``send`` carries every activation that is live across a stage
boundary (the residual stream, and anything else crossing it).  ``stage_graphs`` cuts a graph
after each send: one graph per stage."""
from __future__ import annotations

from accelsim.errors import AccelsimError
from accelsim.graph import Collective, Graph, Tensor

SEND_PREFIX = "pp.send"


def stage_graphs(graph: Graph) -> list[Graph]:
    """Cut a graph after each pipeline send: one graph per stage, in order."""
    stages = [Graph(name=f"{graph.name} stage 0", batch=graph.batch)]
    for op in graph:
        stages[-1].add(op)
        if isinstance(op, Collective) and op.role == "send":
            stages.append(Graph(name=f"{graph.name} stage {len(stages)}", batch=graph.batch))
    return stages


def layer_stages(graph: Graph, pp: int) -> list[int]:
    """Stage of each op: layers in ``pp`` contiguous, equal-count runs; ops outside a layer
    (embedding, final norm, head) join the stage of the layer before them (or the first)."""
    layers = sorted({op.layer for op in graph if op.layer is not None})
    if pp > max(1, len(layers)):
        raise AccelsimError(f"--pp {pp} exceeds the model's {len(layers)} layers")
    stage_of = {layer: i * pp // len(layers) for i, layer in enumerate(layers)}
    stages, current = [], 0
    for op in graph:
        if op.layer is not None:
            current = stage_of[op.layer]
        stages.append(current)
    return stages


def pipeline_sends(graph: Graph, stages: list[int], group: int = 2) -> Graph:
    """Insert a send at each stage boundary carrying every activation produced before it and
    read after it.  ``stages`` gives each op's stage and never decreases."""
    produced: dict[str, tuple[int, Tensor]] = {}
    last_read: dict[str, int] = {}
    for op, stage in zip(graph, stages):
        for t in op.inputs:
            if t.role == "activation":
                last_read[t.name] = max(last_read.get(t.name, 0), stage)
        for t in op.outputs:
            if t.role == "activation":
                produced.setdefault(t.name, (stage, t))
    out = Graph(name=graph.name, batch=graph.batch)
    current = stages[0] if stages else 0
    for op, stage in zip(graph, stages):
        while stage > current:
            live = tuple(t for name, (s, t) in produced.items()
                         if s <= current and last_read.get(name, -1) > current)
            received = tuple(Tensor(f"{t.name}@stage{current + 1}", t.shape, t.dtype, t.role)
                             for t in live)
            out.add(Collective(f"{SEND_PREFIX}.{current}", live, received, layer=None,
                               role="send", pattern="send", group=group))
            current += 1
        out.add(op)
    return out
