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
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from typing import Any, Generic, TypeVar

V = TypeVar("V")

# Steps whose graphs are kept (lowered, fused, joined; about 1 MB each for an 8B model).  Kept
# small on purpose: every graph held is heap that each full garbage collection walks, and a
# loop over configurations that never repeat ran 16 % slower with 64 kept than with none (with
# 16, within a few per cent), while a loop that revisits a handful of shapes gains 5-8x.  The
# lowered graphs (which the others hang on) are kept only while they come back
# (``ByIdentity(doorkeeper=True)``): once other steps got cheaper, holding 16 new ones cost a
# loop of new configurations a quarter of its time in collections.
GRAPHS_KEPT = 16


class ByIdentity(Generic[V]):
    """``make()`` for ``(objects, extra)``, computed once while the entry lives.

    ``weak``: the entry holds its objects weakly and goes when one of them is freed.  For
    memos keyed by a step's graphs: a graph no memo keeps (a micro-batch's, a stage split
    afresh, an imported one) is garbage once its step returns, and so is every answer about
    it, so nothing is held past the graph's own life.

    ``doorkeeper``: entries are kept only while they come back.  Everything a memo holds is heap
    that each garbage collection walks (a step's graphs are thousands of objects); a loop of
    configurations that never repeat paid for holding 16 of them in collections, about a
    quarter of its time.  So while fewer than one ask in ``_RETURNING`` of the last ``_WINDOW``
    found its entry, a key asked for the first time is held only until the next first-time
    key comes (a comparison on a second chip asks right after), and kept among the ``size``
    from its second asking; while entries do come back, or in a memo's first ``_WARMUP`` asks,
    every entry is kept as made."""

    _WINDOW, _RETURNING, _WARMUP = 64, 8, 16

    def __init__(self, size: int, *, weak: bool = False, doorkeeper: bool = False) -> None:
        self._size = size
        self._weak = weak
        self._doorkeeper = doorkeeper
        # first in, first out (``OrderedDict`` drops its oldest in constant time, where a dict
        # scans past the slots its earlier drops left)
        self._entries: OrderedDict[tuple[tuple[int, ...], Hashable], tuple[tuple[Any, ...], V]] = OrderedDict()
        self._recent: OrderedDict[tuple[tuple[int, ...], Hashable], tuple[tuple[Any, ...], V]] = OrderedDict()
        # keys asked for once (ids and extra only: a reused id at worst keeps one entry more)
        self._seen: OrderedDict[tuple[tuple[int, ...], Hashable], None] = OrderedDict()
        self._asked: deque[bool] = deque(maxlen=self._WINDOW)  # whether each recent ask found its entry
        self._found = 0

    def get(self, objects: tuple[Any, ...], extra: Hashable, make: Callable[[], V]) -> V:
        key = (tuple(map(id, objects)), extra)
        hit = self._entries.get(key)
        if hit is None and self._recent:
            hit = self._recent.pop(key, None)
            if hit is not None and self._same(hit[0], objects):  # asked again: kept from now on
                self._keep(self._entries, self._size, key, hit)
        if hit is not None and self._same(hit[0], objects):
            self._count(True)
            return hit[1]
        value = make()
        entry = (self._held(key, objects), value)
        if not self._doorkeeper or key in self._seen or self._returning():
            self._seen.pop(key, None)
            self._keep(self._entries, self._size, key, entry)
        else:
            self._keep(self._seen, 16 * self._size, key, None)
            self._keep(self._recent, 1, key, entry)
        self._count(False)
        return value

    def _count(self, found: bool) -> None:
        if not self._doorkeeper:
            return
        if len(self._asked) == self._asked.maxlen:
            self._found -= self._asked[0]
        self._asked.append(found)
        self._found += found

    def _returning(self) -> bool:
        """Whether entries come back (or the memo is too new to tell)."""
        asked = len(self._asked)
        return asked < self._WARMUP or self._found * self._RETURNING >= asked

    def _same(self, held: tuple[Any, ...], objects: tuple[Any, ...]) -> bool:
        # a loop, not ``all`` over a generator: a step asks its memos ~20 times, keyed by 1-2 objects
        if self._weak:
            for ref, b in zip(held, objects):
                if ref() is not b:
                    return False
            return True
        for a, b in zip(held, objects):
            if a is not b:
                return False
        return True

    def _held(self, key: tuple[tuple[int, ...], Hashable], objects: tuple[Any, ...]) -> tuple[Any, ...]:
        if not self._weak:
            return objects
        entries, recent = self._entries, self._recent

        def gone(_: weakref.ref) -> None:
            entries.pop(key, None)
            recent.pop(key, None)
        return tuple(weakref.ref(o, gone) for o in objects)

    @staticmethod
    def _keep(entries: OrderedDict, size: int, key: Hashable, entry: Any) -> None:
        if key not in entries and len(entries) >= size:
            entries.popitem(last=False)
        entries[key] = entry

    def clear(self) -> None:
        for held in (self._entries, self._recent, self._seen, self._asked):
            held.clear()
        self._found = 0

    def __len__(self) -> int:
        return len(self._entries) + len(self._recent)


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
