"""Memos of pure functions of objects that never change once built (frozen specs, lowered and
fused graphs, which nothing mutates after their transform returns them).

A one-by-one ``simulate`` loop asks the same questions again and again: the same model in the
same formats, the same step shape on another chip, the same GEMM shape in every decoder layer.
These memos key such questions on the identity of the objects they read (cheap, where hashing a
spec's content is not) plus hashable extras; each entry holds its objects, so an id is never
reused while its entry lives, and a hit is checked to be the very same objects.  Bounded: the
oldest entry goes first.  Nothing here caches a whole answer; callers memoise stages.
"""
from __future__ import annotations

import gc
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from typing import Any, Generic, TypeVar

V = TypeVar("V")

# Steps whose graphs are kept (lowered, fused, joined; about 1 MB each for an 8B model).  Kept
# small on purpose: every graph held is heap that each full garbage collection walks, and a
# loop over configurations that never repeat ran 16 % slower with 64 kept than with none (with
# 16, within a few per cent), while a loop that revisits a handful of shapes gains 5-8x.
GRAPHS_KEPT = 16


class ByIdentity(Generic[V]):
    """``make()`` for ``(objects, extra)``, computed once while the entry lives.

    ``weak``: the entry holds its objects weakly and goes when one of them is freed.  For
    memos keyed by a step's graphs: a graph no memo keeps (a micro-batch's, a stage split
    afresh, an imported one) is garbage once its step returns, and so is every answer about
    it, so nothing is held past the graph's own life."""

    def __init__(self, size: int, *, weak: bool = False) -> None:
        self._size = size
        self._weak = weak
        # first in, first out (``OrderedDict`` drops its oldest in constant time, where a dict
        # scans past the slots its earlier drops left)
        self._entries: OrderedDict[tuple[tuple[int, ...], Hashable], tuple[tuple[Any, ...], V]] = OrderedDict()

    def get(self, objects: tuple[Any, ...], extra: Hashable, make: Callable[[], V]) -> V:
        key = (tuple(map(id, objects)), extra)
        hit = self._entries.get(key)
        if hit is not None and self._same(hit[0], objects):
            return hit[1]
        value = make()
        if key not in self._entries and len(self._entries) >= self._size:
            self._entries.popitem(last=False)
        self._entries[key] = (self._held(key, objects), value)
        return value

    def _same(self, held: tuple[Any, ...], objects: tuple[Any, ...]) -> bool:
        if self._weak:
            return all(ref() is b for ref, b in zip(held, objects))
        return all(a is b for a, b in zip(held, objects))

    def _held(self, key: tuple[tuple[int, ...], Hashable], objects: tuple[Any, ...]) -> tuple[Any, ...]:
        if not self._weak:
            return objects
        entries = self._entries

        def gone(_: weakref.ref) -> None:
            entries.pop(key, None)
        return tuple(weakref.ref(o, gone) for o in objects)

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


def hashable(value: Any) -> bool:
    """Whether ``value`` can key a memo (a workload carrying an unhashable profile cannot)."""
    try:
        hash(value)
    except TypeError:
        return False
    return True


@contextmanager
def collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off for the duration (unless it was off already).

    A step allocates thousands of small objects (ops, tensors, their tuples) that are acyclic
    and live exactly as long as the call, bar the few graphs the memos keep.  With the
    collector on, every 700 allocations it walks the young objects, finds them all alive (the
    step is still using them) and promotes them, until enough have been promoted to trigger a
    walk of the whole heap: in a loop of fresh ``simulate`` calls that was about a third of the
    CPU time.  Off for the call, they are freed by reference counting when the call ends and
    the collector runs as usual afterwards.  Only the outermost pause turns it back on (a
    caller that turned the collector off keeps it off; the switch is per process, so a thread
    that turns it off while a step of another thread runs sees it back on when that step ends)."""
    paused = gc.isenabled()
    if paused:
        gc.disable()
    try:
        yield
    finally:
        if paused:
            gc.enable()
