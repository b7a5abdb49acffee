"""Collectives over chip-to-chip links: one alpha-beta cost model shared by every kind.

A message of ``b`` bytes over one hop takes ``latency + b / bandwidth`` (alpha-beta).  Each
collective is a short algorithm of such steps; the number of steps (alpha terms) and the bytes
each chip sends (beta terms) are read off the algorithm in closed form.  Every call also pays
the link's ``base_latency`` once (launching the collective kernel and its handshake; NCCL's own
tuning model charges the same ``baseLat`` + steps x ``hwLat``):

===============  ==========================================  ==========================================
pattern          ring (p-1 neighbour steps per phase)        tree (ceil(log2 p) steps per phase)
===============  ==========================================  ==========================================
all_reduce       2(p-1) a + 2(p-1)/p B/bw                    2 log2(p) a + 2 B/bw  (reduce, then
                 (reduce-scatter, then all-gather)           broadcast, pipelined down a binary tree)
all_gather       (p-1) a + (p-1) b/bw   (b = local shard)    log2(p) a + (p-1) b/bw (recursive doubling)
reduce_scatter   (p-1) a + (p-1)/p B/bw                      log2(p) a + (p-1)/p B/bw (recursive halving)
all_to_all       (p-1) a + (p-1)/2 B/bw (store-and-forward   switch: (p-1) a + (p-1)/p B/bw (p-1
                 on a one-way ring, mean p/2 hops)           direct pairwise exchanges)
send             a + B/bw (one hop to the next stage)
===============  ==========================================  ==========================================

``B`` is the payload per chip (the collective's input bytes).  The mapper picks the fastest
algorithm the topology allows; energy is the bytes each chip puts on a link times the link
energy per byte.  Reduction arithmetic runs on the vector unit and overlaps the transfers.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from accelsim.errors import AccelsimError
from accelsim.graph import Collective, Op
from accelsim.hardware.base import Mapping, OpCost, Placement, bound_of
from accelsim.hardware.spec import HardwareBase, Interconnect

RING = Mapping("ring", {"algorithm": "ring"})
TREE = Mapping("tree", {"algorithm": "tree"})
DIRECT = Mapping("direct", {"algorithm": "direct"})  # point-to-point: send, switch all-to-all

LEVEL = "link"  # the name link traffic carries in OpCost.bytes / memory_s


@dataclass(frozen=True)
class Steps:
    """An algorithm in alpha-beta form: ``hops`` latency terms, ``sent`` bytes per chip."""

    hops: float
    sent: float


def links_of(hw: HardwareBase) -> Interconnect:
    if hw.interconnect is None:
        raise AccelsimError(f"{hw.name} has no interconnect section, so it cannot run on more "
                            f"than one chip; add interconnect: {{bandwidth, latency, energy, "
                            f"topology, source}} to its config")
    return hw.interconnect


def ring_steps(pattern: str, p: int, payload: float) -> Steps:
    if pattern == "all_reduce":
        return Steps(2 * (p - 1), 2 * (p - 1) / p * payload)
    if pattern == "all_gather":
        return Steps(p - 1, (p - 1) * payload)
    if pattern == "reduce_scatter":
        return Steps(p - 1, (p - 1) / p * payload)
    if pattern == "all_to_all":
        return Steps(p - 1, (p - 1) / 2 * payload)
    return Steps(1, payload)


def tree_steps(pattern: str, p: int, payload: float) -> Steps:
    depth = math.ceil(math.log2(p))
    if pattern == "all_reduce":
        return Steps(2 * depth, 2 * payload)
    if pattern == "all_gather":
        return Steps(depth, (p - 1) * payload)
    if pattern == "reduce_scatter":
        return Steps(depth, (p - 1) / p * payload)
    raise AssertionError(f"no tree algorithm for {pattern}")


def direct_steps(pattern: str, p: int, payload: float) -> Steps:
    if pattern == "all_to_all":
        return Steps(p - 1, (p - 1) / p * payload)
    return Steps(1, payload)


ALGORITHMS = {"ring": ring_steps, "tree": tree_steps, "direct": direct_steps}


def mappings(op: Op, hw: HardwareBase) -> list[Mapping]:
    """The algorithms the topology allows for this pattern."""
    topology = links_of(hw).topology
    if op.pattern == "send":
        return [DIRECT]
    if op.pattern == "all_to_all":
        return [DIRECT] if topology == "switch" else [RING]
    return {"ring": [RING], "tree": [TREE], "switch": [RING, TREE]}[topology]


def collective_time(pattern: str, group: int, payload: float, links: Interconnect,
                    algorithm: str) -> tuple[float, float]:
    """(seconds, bytes each chip sends) for one collective among ``group`` chips."""
    if group <= 1 and pattern != "send":
        return 0.0, 0.0
    steps = ALGORITHMS[algorithm](pattern, max(group, 2), payload)
    return links.base_latency + steps.hops * links.latency + steps.sent / links.bandwidth, steps.sent


def cost(op: Op, mapping: Mapping, hw: HardwareBase, placement: Placement | None = None) -> OpCost:
    assert isinstance(op, Collective)
    links = links_of(hw)
    algorithm = mapping.params["algorithm"]
    link_s, sent = collective_time(op.pattern, op.group, op.payload_bytes, links, algorithm)
    compute_s = op.vector_flops / (hw.compute.vector * hw.efficiency.compute)
    memory_s = {LEVEL: link_s} if link_s else {}
    energy = {"interconnect": sent * links.energy}
    if op.vector_flops:
        energy["vector"] = op.vector_flops * hw.energy.vector_op
    time = max(compute_s, link_s)
    return OpCost(op.name, op.kind, op.layer, time, compute_s, memory_s, {LEVEL: sent}, energy,
                  op.flops, hw.compute.vector, bound_of(compute_s, memory_s),
                  f"{op.pattern} {algorithm} x{op.group}")
