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
    """``make()`` for ``(objects, extra)``, computed once while the entry lives."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._entries: dict[tuple[tuple[int, ...], Hashable], tuple[tuple[Any, ...], V]] = {}

    def get(self, objects: tuple[Any, ...], extra: Hashable, make: Callable[[], V]) -> V:
        key = (tuple(map(id, objects)), extra)
        hit = self._entries.get(key)
        if hit is not None and all(a is b for a, b in zip(hit[0], objects)):
            return hit[1]
        value = make()
        if len(self._entries) >= self._size:
            self._entries.pop(next(iter(self._entries)))
        self._entries[key] = (objects, value)
        return value

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
