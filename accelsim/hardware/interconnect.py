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

Torus (``topology: torus``, TPU ICI)
------------------------------------
A chip has two links per torus axis (one to each neighbour), each ``L`` = ``link_bandwidth``
per direction.  A slice of N chips has a shape (``slice_shape``: the published one, else the
most cube-like), and an axis is a ring only where the slice has wraparound links on it
(``Interconnect.wraparound``); otherwise it is a line.  A collective uses only the axes its
group spans (``group_axes``: the tensor-parallel x ranks take whole axes whose lengths multiply
to x where they can, as in Pope et al.'s layout, the y ranks the rest; a part of an axis is
charged as a line).  For spanned axes of lengths n_1..n_k, P = n_1 ... n_k:

* per axis, what a chip can push: a ring with wraparound runs both ways at once (half the data
  each way), 2L; a line cannot close a ring, so its chips send over one link-direction at a
  time (a ring folded onto the line uses every link once each way), L.  An end chip of a line
  has a single link yet must receive (n-1)/n of the data, which is what keeps a line at L.
* hops h_i per reduce-scatter or all-gather pass along axis i: a shard travels at most
  floor(n_i / 2) hops each way round a ring, n_i - 1 along a line.  Axes are done one after
  another for one piece of the data, so the hops add; the payload is cut into pieces that take
  the axes in different orders, so every spanned axis is busy at once and the bandwidth term
  divides by the sum of the per-axis figures.  That is the ideal balance: with axes of equal
  per-axis bandwidth some split of the data over the orders reaches it (e.g. axes of 2 and 4:
  1/6 of the data along 2 then 4, the rest along 4 then 2 loads both axes with 3.5 shards);
  when rings and lines mix it is optimistic.
* bytes each chip must send are those of a flat ring over P chips: nothing in the torus lets a
  chip send less, only faster.

===============  =================================================================================
pattern          torus (W = sum over spanned axes of 2L with wraparound, L without; H = sum h_i)
===============  =================================================================================
all_reduce       2H a + 2(P-1)/P B / W     (reduce-scatter then all-gather, both over the axes)
all_gather       H a + (P-1) b / W         (b = local shard)
reduce_scatter   H a + (P-1)/P B / W
all_to_all       H a + B m / W             m = sum of mean hops per axis to a uniformly chosen
                                           chip: floor(n^2/4)/n round a ring, (n^2-1)/(3n) along
                                           a line.  Each chip spreads B evenly over all P chips
                                           (its own share stays) and a byte that crosses m links
                                           loads m links, so each chip puts B m bytes on its links,
                                           which carry W.  Round a ring this equals the bisection
                                           bound (n B / 8L per axis); along a line it is a little
                                           above it (the middle link is the real limit).
send             a + B / L                 (one hop over the one link to the next stage)
===============  =================================================================================

Energy counts every byte once per link it crosses: the bytes above for the ring-type patterns
(neighbour to neighbour only), B m for all_to_all.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import cast

from accelsim.errors import AccelsimError
from accelsim.graph import Collective, Op
from accelsim.hardware.base import Mapping, OpCost, Placement, bound_of
from accelsim.hardware.spec import HardwareBase, Interconnect

RING = Mapping("ring", {"algorithm": "ring"})
TORUS = Mapping("torus", {"algorithm": "torus"})
TREE = Mapping("tree", {"algorithm": "tree"})
DIRECT = Mapping("direct", {"algorithm": "direct"})  # point-to-point: send, switch all-to-all
ONE_SHOT = Mapping("one-shot", {"algorithm": "one-shot"})
TWO_SHOT = Mapping("two-shot", {"algorithm": "two-shot"})

# Group sizes a serving engine's custom all-reduce runs on: the GPUs of one NVLink board
# (source: vLLM vllm/distributed/device_communicators/custom_all_reduce.py,
# _SUPPORTED_WORLD_SIZES = [2, 4, 6, 8]; TensorRT-LLM's custom all-reduce likewise within a node).
CUSTOM_ALL_REDUCE_GROUPS = (2, 4, 6, 8)

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


def one_shot_steps(pattern: str, p: int, payload: float) -> Steps:
    """Each chip reads every peer's whole buffer and reduces it: one exchange, (p-1) buffers."""
    return Steps(1, (p - 1) * payload)


def two_shot_steps(pattern: str, p: int, payload: float) -> Steps:
    """A reduce-scatter then an all-gather, each chip reading its peers' 1/p slices directly:
    two exchanges, the ring's bytes."""
    return Steps(2, 2 * (p - 1) / p * payload)


ALGORITHMS = {"ring": ring_steps, "tree": tree_steps, "direct": direct_steps,
              "one-shot": one_shot_steps, "two-shot": two_shot_steps}


def mappings(op: Op, hw: HardwareBase) -> list[Mapping]:
    """The algorithms the topology allows for this pattern."""
    topology = links_of(hw).topology
    if topology == "torus":
        return [TORUS]
    pattern = cast(Collective, op).pattern
    if pattern == "send":
        return [DIRECT]
    if pattern == "all_to_all":
        return [DIRECT] if topology == "switch" else [RING]
    # Inside one switched domain a tree is a chain: NCCL builds its trees across nodes and
    # chains the GPUs of a node, so its own latency model charges an intra-node tree
    # 2 (p - 1) steps, a ring's (src/graph/tuning.cc: 2 * ((nRanks/nNodes - 1) * intraLat +
    # log2(nNodes) * interLat)), while sending 2 B instead of 2 (p-1)/p B: never better than
    # the ring, so a switch offers the ring alone.
    if topology == "switch" and pattern == "all_reduce" and _custom_all_reduce(op, hw):
        return [RING, ONE_SHOT, TWO_SHOT]
    return {"ring": [RING], "tree": [TREE], "switch": [RING]}[topology]


def _custom_all_reduce(op: Op, hw: HardwareBase) -> bool:
    """Whether the engine's own peer-to-peer kernel may take this all-reduce: a switched group
    of a size it supports and a message within its buffer."""
    limit = hw.custom_all_reduce_limit()
    collective = cast(Collective, op)
    return (limit is not None and collective.group in CUSTOM_ALL_REDUCE_GROUPS
            and collective.payload_bytes <= limit)


# --- torus ---------------------------------------------------------------------------------

Axis = tuple[int, bool]  # (chips along the axis, whether it closes into a ring)


def most_cubic(chips: int, axes: int) -> tuple[int, ...]:
    """The shape of ``axes`` lengths (ascending) multiplying to ``chips`` that is closest to a
    cube: shortest longest axis, then smallest sum of lengths.  For powers of two this gives
    Google's default slice shapes (v4: 4 chips 1x2x2, 16 chips 2x2x4, 32 chips 2x4x4, 128 chips
    4x4x8; v5e: 8 chips 2x4, 32 chips 4x8; tested against the published tables)."""
    def shapes(n: int, k: int, low: int) -> list[tuple[int, ...]]:
        if k == 1:
            return [(n,)] if n >= low else []
        return [(d, *rest) for d in range(low, n + 1) if n % d == 0
                for rest in shapes(n // d, k - 1, d)]
    return min(shapes(chips, axes, 1), key=lambda s: (max(s), sum(s)))


def slice_shape(links: Interconnect, chips: int) -> tuple[int, ...]:
    """Axis lengths of a slice of ``chips``: the configured (published) shape, else the most
    cube-like one."""
    listed = (links.slice_shapes or {}).get(chips)
    assert links.axes is not None  # a torus names its axes (``Interconnect`` checks)
    return tuple(listed) if listed else most_cubic(chips, links.axes)


def wraps(links: Interconnect, shape: tuple[int, ...]) -> tuple[bool, ...]:
    """Which axes of a slice of this shape have wraparound links."""
    rule, length = links.wraparound, links.wrap_length or 1
    if rule == "whole_cubes":
        whole = all(n % length == 0 for n in shape)
        return tuple(whole for _ in shape)
    if rule == "full_axis":
        return tuple(n % length == 0 for n in shape)
    return tuple(rule == "always" for _ in shape)


def _take(axes: list[Axis], size: int) -> tuple[list[Axis], list[Axis]]:
    """Split ``axes`` into the part a group of ``size`` chips spans and the rest.  Whole axes
    whose lengths multiply to ``size`` when there are such (fewest axes, rings first: Pope et
    al. put x on one axis); else, axis by axis, the largest part of each that still divides
    what is left, a part of an axis being a line (its wraparound joins chips outside it)."""
    best = None
    for mask in range(1, 2 ** len(axes)):
        chosen = [i for i in range(len(axes)) if mask >> i & 1]
        if math.prod(axes[i][0] for i in chosen) == size:
            key = (len(chosen), -sum(axes[i][1] for i in chosen), chosen)
            best = min(best, key) if best else key
    if size == 1:
        return [], list(axes)
    if best is not None:
        chosen = best[2]
        return ([a for i, a in enumerate(axes) if i in chosen],
                [a for i, a in enumerate(axes) if i not in chosen])
    taken, rest, left = [], [], size
    for n, ring in axes:
        g = math.gcd(n, left)
        left //= g
        if g > 1:
            taken.append((g, ring and g == n))
        if n // g > 1:
            rest.append((n // g, ring and g == 1))
    if left != 1:
        raise AccelsimError(f"a group of {size} chips does not fit the torus axes "
                            f"{'x'.join(str(n) for n, _ in axes)}")
    return taken, rest


def group_axes(op: Collective, links: Interconnect) -> list[Axis]:
    """The torus axes (length, ring?) the collective's group spans.  The slice is the op's
    tensor-parallel grid (x x y chips), or the group alone when the op names no grid."""
    ranks = op.grid[0] * op.grid[1] if op.grid is not None else op.group
    shape = slice_shape(links, ranks)
    axes = [a for a in zip(shape, wraps(links, shape)) if a[0] > 1]
    if op.grid is not None and op.span != "all":
        x_axes, y_axes = _take(axes, op.grid[0])
        axes = x_axes if op.span == "x" else y_axes
    if op.group < math.prod(n for n, _ in axes):
        axes = _take(axes, op.group)[0]
    return axes


def mean_hops(n: int, ring: bool) -> float:
    """Mean hops from a chip to a uniformly chosen chip (itself included) along one axis."""
    return (n * n // 4) / n if ring else (n * n - 1) / (3 * n)


@dataclass(frozen=True)
class LinkTime:
    """One collective's link time in alpha-beta form: ``latency_s`` (the base latency plus
    steps x per-step latency), ``bytes_s`` (bytes over bandwidth) and ``sent``, the bytes each
    chip puts on links.  The two terms decide its label (``base.bound_of``)."""

    latency_s: float
    bytes_s: float
    sent: float

    @property
    def seconds(self) -> float:
        return self.latency_s + self.bytes_s


def torus_terms(pattern: str, axes: list[Axis], payload: float, links: Interconnect) -> LinkTime:
    """One collective over the spanned ``axes`` of a torus."""
    assert links.link_bandwidth is not None  # a torus gives its link bandwidth (``Interconnect`` checks)
    L = links.link_bandwidth * links.efficiency
    if pattern == "send":
        return LinkTime(links.base_latency + links.latency, payload / L, payload)
    if not axes:
        return LinkTime(0.0, 0.0, 0.0)
    p = math.prod(n for n, _ in axes)
    width = sum((2 if ring else 1) * L for _, ring in axes)
    hops = sum(n // 2 if ring else n - 1 for n, ring in axes)
    if pattern == "all_to_all":  # every byte loads each link it crosses
        sent = payload * sum(mean_hops(n, ring) for n, ring in axes)
    else:  # a chip sends what it would on a flat ring of p chips, only faster
        sent = ring_steps(pattern, p, payload).sent
        hops *= 2 if pattern == "all_reduce" else 1
    return LinkTime(links.base_latency + hops * links.latency, sent / width, sent)


def collective_terms(pattern: str, group: int, payload: float, links: Interconnect,
                     algorithm: str) -> LinkTime:
    """One collective among ``group`` chips by ``algorithm``."""
    if group <= 1 and pattern != "send":
        return LinkTime(0.0, 0.0, 0.0)
    steps = ALGORITHMS[algorithm](pattern, max(group, 2), payload)
    assert links.bandwidth is not None  # every topology but the torus gives it
    rate = links.bandwidth * links.efficiency
    return LinkTime(links.base_latency + steps.hops * links.latency, steps.sent / rate, steps.sent)


def cost(op: Op, mapping: Mapping, hw: HardwareBase, placement: Placement | None = None) -> OpCost:
    assert isinstance(op, Collective)
    links = links_of(hw)
    if links.domain is not None and op.group > links.domain:
        raise AccelsimError(f"{hw.name}: a {op.pattern} over {op.group} chips spans more than the "
                            f"{links.domain} chips its links join (interconnect.domain); use at "
                            f"most {links.domain} chips per parallel group")
    algorithm = mapping.params["algorithm"]
    if algorithm == "torus":
        axes = group_axes(op, links) if op.group > 1 and op.pattern != "send" else []
        link = torus_terms(op.pattern, axes, op.payload_bytes, links)
        # e.g. "torus 4(w)x4(w)": two axes of 4 with wraparound; "torus 2x4": two lines
        algorithm = "torus " + ("x".join(f"{n}{'(w)' if ring else ''}" for n, ring in axes)
                                or "1 hop")
    else:
        link = collective_terms(op.pattern, op.group, op.payload_bytes, links, algorithm)
    link_s, sent = link.seconds, link.sent
    compute_s = op.vector_flops / (hw.compute.vector * hw.efficiency.compute)
    memory_s = {LEVEL: link_s} if link_s else {}
    energy = {"interconnect": sent * links.energy}
    if op.vector_flops:
        energy["vector"] = op.vector_flops * hw.energy.vector_op
    time = max(compute_s, link_s)
    return OpCost(op.name, op.kind, op.layer, time, compute_s, memory_s, {LEVEL: sent}, energy,
                  op.flops, hw.compute.vector, bound_of(compute_s, memory_s, latency_s=link.latency_s),
                  f"{op.pattern} {algorithm} x{op.group}")
