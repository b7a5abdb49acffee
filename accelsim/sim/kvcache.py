"""Prefix caching on the paged KV pool, and a host-memory tier KV blocks can be offloaded to.

``PrefixCache`` keeps the full KV blocks of shared prompt prefixes on the chip after the
requests that computed them end (vLLM V1's automatic prefix caching, SGLang's radix cache).
A prefix is an id and a length; its blocks form a chain 0, 1, ... (block ``i`` is only useful
with blocks ``0 .. i-1``, as vLLM's chained block hashes make it), so the cache holds, per
prefix, the first ``n`` blocks on the chip and, with a host tier, the next few in host memory.
A request with that prefix references (ref-counts) the cached blocks instead of computing them.
Blocks that no running request references stay cached while the pool has no better use for
them and are evicted least recently used first when new blocks are needed; within a prefix the
tail goes first (vLLM frees a request's blocks in reverse order for the same reason: the head
of a chain is shared by more requests).

``HostPool`` is host DRAM behind the chip's host link (PCIe, NVLink-C2C: ``host_memory`` in
the hardware config): evicted prefix blocks move there instead of being dropped, and come back
over the link when a later request hits them; preempted requests' caches are swapped there and
back.  Every transfer costs ``bytes / bandwidth + latency`` (``HostTier.transfer_s``).
"""
from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, field

from accelsim.errors import AccelsimError
from accelsim.hardware.spec import HardwareBase

OFFLOADS: tuple[str, ...] = ("none", "host")


@dataclass(frozen=True)
class HostTier:
    """Host memory a chip (or a system of ``chips``) offloads KV to, and the link to it."""

    capacity_bytes: float
    bandwidth: float  # bytes/s, one direction
    latency_s: float  # per transfer

    def transfer_s(self, nbytes: float) -> float:
        """One copy of ``nbytes`` one way: a DMA's fixed start-up plus the bytes at link speed."""
        return nbytes / self.bandwidth + self.latency_s if nbytes > 0 else 0.0


def host_tier(hw: HardwareBase, chips: int) -> HostTier:
    """The host tier of ``chips`` chips of ``hw`` (each brings its share of host memory and its
    own link, so capacity and bandwidth scale with the chips a serving instance spans)."""
    host = hw.host_memory
    if host is None:
        raise AccelsimError(f"--kv-offload host needs a host_memory section (capacity, bandwidth, latency, "
                            f"source) in the hardware config; {hw.name} has none")
    return HostTier(host.capacity * chips, host.bandwidth * chips, host.latency)


@dataclass
class _Prefix:
    """One prefix's blocks: ``0 .. on_chip-1`` in the pool, ``on_chip .. host_end-1`` on the host."""

    on_chip: int = 0
    host_end: int = 0
    held: dict[int, int] = field(default_factory=dict)  # blocks a request references -> requests

    @property
    def max_held(self) -> int:
        return max(self.held, default=0)

    @property
    def idle(self) -> int:
        """Blocks on the chip no request references: the tail beyond the longest holder."""
        return self.on_chip - self.max_held

    @property
    def on_host(self) -> int:
        return max(0, self.host_end - self.on_chip)


class HostPool:
    """Host memory in bytes: swapped requests' caches (pinned until resumed) and offloaded prefix
    blocks (dropped least recently used first when room is needed)."""

    def __init__(self, tier: HostTier, block_bytes: float):
        self.tier, self.block_bytes = tier, block_bytes
        self.pinned = 0.0
        self.prefix_blocks = 0
        self.peak = 0.0
        self.bytes_out = 0.0  # chip -> host
        self.bytes_in = 0.0   # host -> chip
        self.cache: PrefixCache | None = None  # whose offloaded blocks this pool may drop

    @property
    def used(self) -> float:
        return self.pinned + self.prefix_blocks * self.block_bytes

    def _note(self) -> None:
        self.peak = max(self.peak, self.used)

    def room(self, nbytes: float) -> bool:
        """Make room for ``nbytes`` by dropping offloaded prefix blocks; False if it cannot."""
        spare = self.tier.capacity_bytes - self.used
        if spare >= nbytes:
            return True
        if self.cache is not None:
            self.cache.drop_host(math.ceil((nbytes - spare) / self.block_bytes))
        return self.tier.capacity_bytes - self.used >= nbytes

    def swap_out(self, nbytes: float) -> float | None:
        """Pin a preempted request's cache in host memory: the copy's seconds, or None when the
        host tier has no room (the request is recomputed instead)."""
        if not self.room(nbytes):
            return None
        self.pinned += nbytes
        self.bytes_out += nbytes
        self._note()
        return self.tier.transfer_s(nbytes)

    def swap_in(self, nbytes: float) -> float:
        self.pinned -= nbytes
        self.bytes_in += nbytes
        return self.tier.transfer_s(nbytes)


class PrefixCache:
    """Ref-counted, LRU-evicted prefix blocks in a KV pool (see the module docstring).

    The pool's owner keeps the free-block count; this object says how many of its blocks are
    cached (``blocks``) and how many of those no request uses (``idle``: evictable)."""

    def __init__(self, host: HostPool | None = None):
        self.prefixes: dict[int, _Prefix] = {}
        # Prefixes with idle blocks, least recently used first: where eviction looks.
        self.lru: OrderedDict[int, None] = OrderedDict()
        self.blocks = 0
        self.idle = 0
        self.host = host
        self.host_lru: OrderedDict[int, None] = OrderedDict()  # prefixes with host blocks
        if host is not None:
            host.cache = self
        self.transfer_s = 0.0  # link time the next step waits for (offloads and reloads)

    def _get(self, pid: int) -> _Prefix:
        return self.prefixes.setdefault(pid, _Prefix())

    def _touch(self, pid: int, p: _Prefix, before_idle: int, before_host: int, used: bool = True) -> None:
        """Book the change of ``p``'s idle and host blocks; ``used``: a request used it, so it
        becomes the most recently used (eviction itself leaves the order alone).  A prefix's
        place on the host is when its blocks last went there."""
        self.idle += p.idle - before_idle
        if used:
            self.lru.pop(pid, None)
        if p.idle <= 0:
            self.lru.pop(pid, None)
        elif pid not in self.lru:
            self.lru[pid] = None
        if self.host is not None:
            self.host.prefix_blocks += p.on_host - before_host
            self.host._note()
            if p.on_host > before_host:
                self.host_lru.pop(pid, None)
            if p.on_host <= 0:
                self.host_lru.pop(pid, None)
            elif pid not in self.host_lru:
                self.host_lru[pid] = None

    def lookup(self, pid: int, limit: int) -> tuple[int, int]:
        """(blocks on the chip, blocks on the host) of the chain a request with prefix ``pid``
        can reuse, at most ``limit`` blocks in all."""
        p = self.prefixes.get(pid)
        if p is None or limit <= 0:
            return 0, 0
        chip = min(p.on_chip, limit)
        return chip, min(p.on_host, limit - chip)

    def pins(self, pid: int, chip: int) -> int:
        """Idle blocks that taking the first ``chip`` blocks of ``pid`` would stop being idle
        (they can no longer be evicted to make room for the taker's own blocks)."""
        p = self.prefixes.get(pid)
        if p is None:
            return 0
        return p.idle - (p.on_chip - max(p.max_held, chip))

    def acquire(self, pid: int, chip: int, host: int) -> None:
        """A request takes the first ``chip + host`` blocks of the chain; the ``host`` ones were
        given fresh pool blocks by the caller and are copied back over the link."""
        p = self._get(pid)
        idle, on_host = p.idle, p.on_host
        if host:
            p.on_chip += host
            self.blocks += host
            if self.host is not None:
                nbytes = host * self.host.block_bytes
                self.host.bytes_in += nbytes
                self.transfer_s += self.host.tier.transfer_s(nbytes)
        n = chip + host
        if n:
            p.held[n] = p.held.get(n, 0) + 1
        self._touch(pid, p, idle, on_host)

    def publish(self, pid: int, held: int, full: int) -> tuple[int, int]:
        """A request holding ``held`` cached blocks has computed blocks up to ``full``: those the
        cache lacks move into it, those another request published meanwhile are duplicates.
        Returns (moved, duplicates): private blocks that became cached / that can be freed."""
        p = self._get(pid)
        idle, on_host = p.idle, p.on_host
        moved = max(0, full - max(p.on_chip, held))
        duplicates = max(0, min(p.on_chip, full) - held)
        p.on_chip += moved
        self.blocks += moved
        if held:
            p.held[held] -= 1
            if not p.held[held]:
                del p.held[held]
        if full:
            p.held[full] = p.held.get(full, 0) + 1
        self._touch(pid, p, idle, on_host)
        return moved, duplicates

    def release(self, pid: int, held: int) -> None:
        """A request that referenced ``held`` blocks ends or is preempted: they stay cached."""
        if not held:
            return
        p = self.prefixes[pid]
        idle, on_host = p.idle, p.on_host
        p.held[held] -= 1
        if not p.held[held]:
            del p.held[held]
        self._touch(pid, p, idle, on_host)

    def evict(self, n: int) -> int:
        """Free up to ``n`` idle blocks, least recently used prefix first, tail first; with a
        host tier they are copied there (while it has room) instead of dropped.  Returns the
        blocks freed."""
        freed = 0
        moved = 0
        while freed < n and self.lru:
            pid = next(iter(self.lru))
            p = self.prefixes[pid]
            take = min(n - freed, p.idle)
            # Room first: making it may drop host blocks of this very prefix.
            to_host = self.host is not None and self.host.room(take * self.host.block_bytes)
            idle, on_host = p.idle, p.on_host
            if to_host:
                # The host range starts where the chip's ends, so it grows downwards by ``take``.
                p.host_end = max(p.host_end, p.on_chip)
                moved += take
            else:
                p.host_end = 0  # a gap would break the chain: what was on the host is unreachable
            p.on_chip -= take
            self.blocks -= take
            freed += take
            self._touch(pid, p, idle, on_host, used=False)
        if moved and self.host is not None:
            nbytes = moved * self.host.block_bytes
            self.host.bytes_out += nbytes
            self.transfer_s += self.host.tier.transfer_s(nbytes)
        return freed

    def drop_host(self, n: int) -> None:
        """Drop up to ``n`` offloaded blocks from host memory, least recently used prefix first,
        each prefix's tail first."""
        while n > 0 and self.host_lru:
            pid = next(iter(self.host_lru))
            p = self.prefixes[pid]
            idle, on_host = p.idle, p.on_host
            take = min(n, on_host)
            p.host_end -= take
            n -= take
            self._touch(pid, p, idle, on_host, used=False)

    def take_transfer_s(self) -> float:
        t, self.transfer_s = self.transfer_s, 0.0
        return t
