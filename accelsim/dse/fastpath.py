"""The analytical cost evaluated over many design points at once, column by column.

A grid or random space varies a few independent keys, so most of a point's config repeats:
  * each top-level config section is validated once per distinct value it takes (the keys a
    section depends on, derived keys included, decide when two points share it); a point is
    then a row of section indices, and only the kind's cross-section checks run per point,
    on already-validated sections (what ``Space.hardware`` does, so a bad point is refused
    exactly as there: the refusal line comes from the scalar path);
  * placement (``allocate``) runs once per distinct combination of the sections it reads;
  * the graph is lowered once per process and workload, each op shape costed once per layout;
  * the backends' ``params``/``terms``/``schedule`` and the area model read a column view of the
    spec (``accelsim.dse.columns``): one array element per design point, the same formulas the
    scalar path runs (there is no second copy of any formula here);
  * rows are built as columns.
Points the view cannot express (a non-numeric field that differs inside one layout) and kinds
that choose their own chip count (``Backend.spans_chips``: the fast path costs one chip) are
evaluated one by one, and the caller is told so: ``evaluate`` returns the table with
``vectorised`` and ``one_by_one``, the points counted each way, and the notes say it.
"""
from __future__ import annotations

import contextlib
import copy
import gc
import inspect
import itertools
import math
import operator
import typing
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache, partial
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ValidationError, create_model

from accelsim import hardware, pipeline
from accelsim.dse import metrics
from accelsim.dse.columns import Mixed, spec_columns
from accelsim.dse.derived import derived_values, expression_names, related_keys
from accelsim.dse.evaluate import Job, base_row, evaluate_scalar
from accelsim.dse.space import (
    METRICS,
    _adapter,
    point_id,
    point_ids,
    to_number,
)
from accelsim.errors import DoesNotFitError
from accelsim.hardware import common
from accelsim.hardware.base import Backend
from accelsim.model.lower import lower
from accelsim.sim.mapper import _shape_key


@dataclass
class _Timed:
    """What ``schedule`` reads of an op cost: its layer and its time (array over points)."""

    layer: int | None
    time_s: Any


# Metrics that may have no value (NaN: a breakeven that never comes); every other must be finite.
OPTIONAL_METRICS = frozenset({"breakeven_mtokens"})


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """The cyclic garbage collector held off for one chunk.  A chunk allocates many small
    containers (documents, keys, specs) while the process holds a large, long-lived heap (the
    validated sections, the traced memos), so the collector's passes over that heap took about
    a third of a random search's time.  Nothing a chunk allocates needs it to be freed
    mid-chunk (reference counting frees the rest), and it runs again after."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def evaluate(job: Job, points: list[dict[str, Any]], notes: list[str] | None = None,
             ids: list[str] | None = None) -> _Table:
    """The sweep's table: ``records()``, ``frame()``, and how many points were evaluated
    vectorised (``vectorised``) and one by one (``one_by_one``).  ``ids``: the points'
    ``ids(points)``, where the caller computed them already (not computed again)."""
    with gc_paused():
        table = _Table.evaluate(job, points, notes)
    table.ids = ids
    table.refuse_non_finite()
    if notes is not None and points:
        notes.append(f"{table.vectorised} point(s) evaluated vectorised, {table.one_by_one} one by one")
    return table


def evaluate_points(job: Job, points: list[dict[str, Any]], notes: list[str] | None = None) -> list[dict]:
    """Rows for ``points`` equal (to float rounding) to ``evaluate_scalar`` on each point."""
    return evaluate(job, points, notes).records()


def ids(points: list[dict[str, Any]]) -> list[str]:
    """``space.point_id`` of each point, computed column-wise where the points share one key list."""
    if not points:
        return []
    keys = list(points[0])
    if any(list(p) != keys for p in points):
        return [point_id(p) for p in points]
    encoded = _Encoded.of(points, keys)
    return point_ids(keys, encoded.distinct, encoded.index)


def evaluate_frame(job: Job, points: list[dict[str, Any]], notes: list[str] | None = None) -> pd.DataFrame:
    """The same rows as ``evaluate_points`` as one DataFrame (metrics NaN where a point failed)."""
    return evaluate(job, points, notes).frame()


# ---------------------------------------------------------------------------------------------
# Output columns


@dataclass(frozen=True)
class _Encoded:
    """Points column-wise: per key, its distinct values and each point's index among them."""

    keys: list[str]
    distinct: list[list[Any]]
    index: list[np.ndarray]

    @classmethod
    def of(cls, points: list[dict[str, Any]], keys: list[str]) -> _Encoded:
        pairs = [_codes([p[k] for p in points]) for k in keys]
        return cls(keys, [d for d, _ in pairs], [i for _, i in pairs])

    def take(self, rows: np.ndarray) -> _Encoded:
        return _Encoded(self.keys, self.distinct, [i[rows] for i in self.index])

    def structure_groups(self) -> list[np.ndarray]:
        """Rows grouped by their structural values (``_structural``): only points that agree
        on those can share one column view."""
        n = len(self.index[0]) if self.index else 0
        columns = []
        for distinct, index in zip(self.distinct, self.index):
            flags = np.array([_structural(v) for v in distinct])
            if flags.any():
                columns.append(np.where(flags[index], index, -1))
        if not columns or n == 0:
            return [np.arange(n, dtype=np.intp)]
        _, inverse = np.unique(np.stack(columns, axis=1), axis=0, return_inverse=True)
        inverse = np.asarray(inverse).ravel()
        return [np.flatnonzero(inverse == g) for g in range(inverse.max() + 1)]


@dataclass
class _Table:
    """The sweep's output, one array per column; ``rows`` holds the points evaluated one by one."""

    points: list[dict[str, Any]]
    status: np.ndarray
    reason: np.ndarray
    values: dict[str, np.ndarray]
    encoded: _Encoded | None = None
    rows: dict[int, dict[str, Any]] = field(default_factory=dict)
    ids: list[str] | None = None  # ``ids(points)``, where given
    vectorised: int = 0  # points placed (and, where they fit, costed) as columns
    one_by_one: int = 0  # points costed through the scalar path (``evaluate_scalar``)

    @classmethod
    def evaluate(cls, job: Job, points: list[dict[str, Any]], notes: list[str] | None) -> _Table:
        n = len(points)
        table = cls(points, np.full(n, metrics.STATUS_OK, dtype=object), np.full(n, "", dtype=object),
                    {m: np.full(n, np.nan) for m in METRICS})
        by_keys: dict[tuple, list[int]] = defaultdict(list)
        for i, point in enumerate(points):
            by_keys[tuple(point)].append(i)
        for keys, members in by_keys.items():
            rows = np.asarray(members, dtype=np.intp)
            encoded = _Encoded.of([points[i] for i in members], list(keys))
            if len(by_keys) == 1:
                table.encoded = encoded
            for group in encoded.structure_groups():
                _Group(job, points, rows[group], encoded.take(group), table, notes).run()
        return table

    def fail(self, i: int, status: str, reason: str) -> None:
        self.status[i], self.reason[i] = status, reason

    def put(self, indices: np.ndarray, values: dict[str, Any]) -> None:
        for name, v in values.items():
            self.values[name][indices] = v

    def scalar(self, job: Job, i: int) -> None:
        row = evaluate_scalar(job, self.points[i])
        self.one_by_one += 1
        self.rows[i] = row
        self.fail(i, row["status"], row["reason"])
        if row["status"] == metrics.STATUS_OK:
            for name in METRICS:
                self.values[name][i] = math.nan if row[name] is None else row[name]

    def _base(self, as_text: bool = False) -> tuple[list[str], list[list[Any]]] | None:
        """Point id and parameter columns (values as ``evaluate.base_row`` writes them, or as
        CSV text with ``as_text``: converted once per distinct value), or None when the points
        do not share one key list."""
        e = self.encoded
        if e is None:
            return None
        columns = [self.ids if self.ids is not None else point_ids(e.keys, e.distinct, e.index)]
        for distinct, index in zip(e.distinct, e.index):
            cells = [_cell(v) for v in distinct]
            if as_text:
                cells = [_text(c) for c in cells]
            columns.append([cells[c] for c in index.tolist()])
        return ["point_id", *e.keys], columns

    def refuse_non_finite(self) -> None:
        """The vectorised twin of pipeline's NotFiniteError: a point whose figures would not be
        finite is invalid, never inf (a breakeven that never comes is NaN by design)."""
        ok = self.status == metrics.STATUS_OK
        values = np.stack([np.asarray(self.values[m], dtype=float) for m in METRICS])  # all metrics at once
        optional = np.array([m in OPTIONAL_METRICS for m in METRICS])[:, None]
        bad = (~np.isfinite(values) & ~(np.isnan(values) & optional)).any(axis=0)
        for i in np.flatnonzero(ok & bad):
            if int(i) not in self.rows:
                self.status[i] = metrics.STATUS_INVALID
                self.reason[i] = "the step's figures would not be finite numbers"

    def cells(self, fields: list[str]) -> list[list[Any]] | None:
        """The table as CSV cells, column by column in the order of ``fields``: floats as their
        exact ``repr``, gaps empty (what the row writer makes of ``records()``); None when the
        points do not share one key list."""
        base = self._base(as_text=True)
        if base is None:
            return None
        names, columns = base
        by_name: dict[str, list[Any]] = dict(zip(names, columns))  # ids are text already
        by_name["status"] = self.status.tolist()
        by_name["reason"] = self.reason.tolist()
        ok = self.status == metrics.STATUS_OK
        # every metric's floats in one run (one call's set-up, not one per metric: a small chunk,
        # an NSGA-II generation, spent as long on those as on the reprs)
        values = np.stack([np.asarray(self.values[m], dtype=float) for m in METRICS])
        texts = np.array(_reprs(values.ravel()), dtype=object).reshape(values.shape)
        # A failed point has no metrics (``records`` leaves them out), and NaN marks a metric
        # with no value (a breakeven that never comes): both an empty cell.
        texts[~ok[None, :] | np.isnan(values)] = ""
        by_name.update(zip(METRICS, texts.tolist()))
        for i, row in self.rows.items():  # points the scalar path wrote, as it wrote them
            for f in fields:
                by_name[f][i] = _text(row.get(f))
        return [by_name[f] for f in fields]

    def records(self) -> list[dict[str, Any]]:
        base = self._base()
        status, reason = self.status.tolist(), self.reason.tolist()
        values = list(zip(*(self.values[m].tolist() for m in METRICS))) or [()] * len(status)
        if base is None:
            heads = [base_row(p) for p in self.points]
        else:
            names, columns = base
            heads = [dict(zip(names, row)) for row in zip(*columns)]
        out = []
        for i, (head, s, r, v) in enumerate(zip(heads, status, reason, values)):
            if i in self.rows:
                out.append(self.rows[i])
                continue
            head["status"], head["reason"] = s, r
            if s == metrics.STATUS_OK:
                # NaN marks a metric with no value (a breakeven that never comes): an empty cell
                head.update((m, None if isinstance(x, float) and math.isnan(x) else x) for m, x in zip(METRICS, v))
            out.append(head)
        return out

    def frame(self) -> pd.DataFrame:
        base = self._base()
        if base is None:
            return pd.DataFrame(self.records())
        names, columns = base
        data: dict[str, Any] = dict(zip(names, columns))
        data.update(status=self.status, reason=self.reason, **self.values)
        return pd.DataFrame(data)


def _reprs(values: np.ndarray) -> list[str]:
    """``repr`` of each float, made by the list's own repr in C (a list shows its floats by
    their ``repr``), not one Python call per value; a column with many repeats (area, dies)
    is converted once per distinct value (told apart by their bits, so -0.0 stays itself)."""
    if not len(values):
        return []
    values = np.ascontiguousarray(values, dtype=float)
    bits, inverse = np.unique(values.view(np.int64), return_inverse=True)
    if 2 * len(bits) > len(values):
        return str(values.tolist())[1:-1].split(", ")
    texts = np.array(str(bits.view(float).tolist())[1:-1].split(", "), dtype=object)
    return texts[np.asarray(inverse).ravel()].tolist()


def _text(value: Any) -> Any:
    """A cell as the CSV writer gets it: floats exactly (``repr``), None as empty."""
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    return value


def _cell(value: Any) -> Any:
    try:
        return to_number(value)
    except ValueError:
        return str(value)


_FEW = 1024


def _codes(values: list[Any]) -> tuple[list[Any], np.ndarray]:
    """Distinct values (first occurrence order) and each value's index among them.  Values of
    one plain type are hashed in C (pandas); mixed types are told apart in Python, since
    1, 1.0 and True are equal keys there but different points."""
    if values and len(set(map(type, values))) == 1 and type(values[0]) in (str, int, float):
        if len(values) <= _FEW:  # a small chunk (an NSGA-II generation): pandas' fixed cost outweighs
            first: dict[Any, int] = {}  # one type: a value is its own key, as ``(type, value)`` below
            codes = np.fromiter((first.setdefault(v, len(first)) for v in values), dtype=np.intp, count=len(values))
            return list(first), codes
        index, distinct = pd.factorize(pd.Series(values, dtype=object), sort=False)
        if (index >= 0).all():
            return list(distinct), np.asarray(index, dtype=np.intp)
    seen: dict[Any, int] = {}
    distinct = []
    index = np.empty(len(values), dtype=np.intp)
    for i, v in enumerate(values):
        key = (type(v), v) if isinstance(v, (str, int, float)) else repr(v)
        code = seen.get(key)
        if code is None:
            code = seen[key] = len(distinct)
            distinct.append(v)
        index[i] = code
    return distinct, index


def _structural(v: Any) -> bool:
    """A value that changes a chip's structure rather than its numbers (lists, names, flags)."""
    if isinstance(v, (bool, list, dict)):
        return True
    if not isinstance(v, str):
        return False
    try:  # a quantity: ``to_number`` parses it iff ``dimension_of`` finds its dimension, and
        to_number(v)  # tries its unit's dimension first (a sampled '1.234e8 B' is new each time)
    except ValueError:
        return True
    return False


# ---------------------------------------------------------------------------------------------
# Validation and placement, once per distinct section value


def section_dependencies(keys: list[str], derived: dict[str, str]) -> dict[str, list[str]]:
    """Top-level section -> the parameter keys its value depends on, directly or through the
    derived keys written into it (which may read parameters and earlier derived keys)."""
    through: dict[str, set[str]] = {}
    for key, expr in derived.items():
        deps: set[str] = set()
        for name in expression_names(expr):
            deps |= {k for k in keys if related_keys(name, k)}
            for earlier, more in through.items():
                if related_keys(name, earlier):
                    deps |= more
        through[key] = deps
    sections: dict[str, set[str]] = defaultdict(set)
    for k in keys:
        sections[k.split(".")[0]].add(k)
    for key, deps in through.items():
        sections[key.split(".")[0]] |= deps
    return {s: sorted(deps) for s, deps in sections.items()}


class _Reads:
    """A spec that records which of its top-level fields a function read."""

    def __init__(self, spec):
        self.__dict__.update(_spec=spec, read=set())

    def __getattr__(self, name: str):
        self.read.add(name)
        return getattr(self._spec, name)


# A read of a spec, as ``_TracedMemo`` records it: the attribute path from the spec's top and
# what of the object there was used: its value ("v", a leaf: number, text, list, dict, None),
# its type ("t", a section that was then read into) or the object itself ("id": a method was
# called on it, which may look anywhere inside).
Item = tuple[tuple[str, ...], str]
_ABSENT = object()  # a path that does not exist on some point (a section None there)


_STATIC: dict[tuple[type, str], str] = {}


def _static_kind(cls: type, name: str) -> str:
    """How reading ``name`` on an instance of ``cls`` depends on the instance: "field" (a
    pydantic field), "const" (a plain class attribute: fixed by the class) or "whole" (a method,
    property or other descriptor: it may read any field).  Kept per (class, name)."""
    how = _STATIC.get((cls, name))
    if how is None:
        if name in cls.model_fields:  # type: ignore[attr-defined]
            how = "field"
        else:
            static = inspect.getattr_static(cls, name, _ABSENT)
            how = "whole" if static is _ABSENT or hasattr(static, "__get__") else "const"
        _STATIC[(cls, name)] = how
    return how


class _Traced:
    """A spec (or one of its sections) that records the leaves a function reads, below the
    top-level fields: placement reads ``memory.hbm.capacity``, not the whole ``memory``, so
    points that differ only in ``memory.hbm.bandwidth`` share its outcome.  Sections read into
    come back traced too; ``isinstance`` sees the real class.  Anything it cannot follow (an
    operator on a section, a method call) either records the whole object or raises, and the
    memo then falls back to top-level reads (``_TracedMemo.run``)."""

    __slots__ = ("_items", "_obj", "_path")

    def __init__(self, obj: Any, path: tuple[str, ...], items: set[Item]):
        object.__setattr__(self, "_obj", obj)
        object.__setattr__(self, "_path", path)
        object.__setattr__(self, "_items", items)

    @property  # type: ignore[misc]
    def __class__(self) -> type:  # isinstance(traced, MemoryLevel) as on the real object
        return type(self._obj)

    def __getattr__(self, name: str) -> Any:
        obj, path, items = self._obj, self._path, self._items
        value = getattr(obj, name)
        how = _static_kind(type(obj), name)
        if how == "const":
            return value
        if how == "whole":
            items.add((path, "id"))
            return value
        here = (*path, name)
        if isinstance(value, BaseModel):
            items.add((here, "t"))
            return _traced(value, here, items)
        items.add((here, "v"))
        return value


_TRACED_CLASSES: dict[type, type] = {}


def _traced(obj: Any, path: tuple[str, ...], items: set[Item]) -> _Traced:
    """``obj`` traced, as an instance of a ``_Traced`` subclass that carries the model class's
    ``model_fields`` (a check may read ``type(section).model_fields``)."""
    cls = type(obj)
    proxy = _TRACED_CLASSES.get(cls)
    if proxy is None:
        proxy = _TRACED_CLASSES[cls] = type(f"_Traced{cls.__name__}", (_Traced,),
                                            {"__slots__": (), "model_fields": dict(cls.model_fields)})
    return proxy(obj, path, items)


def _walk(obj: Any, rest: tuple[str, ...]) -> Any:
    for part in rest:
        obj = getattr(obj, part, _ABSENT)
        if obj is _ABSENT:
            break
    return obj


def _part(value: Any, mode: str) -> Any:
    """A hashable key for what item ``mode`` reads of ``value``: equal keys, same reads."""
    if mode == "t":
        return type(value)
    if mode == "id":
        return id(value)
    if type(value) is float:
        return (float, repr(value))  # -0.0 and 0.0 apart, a NaN equal to itself
    try:
        hash(value)
    except TypeError:
        return (type(value), repr(value))  # dicts and lists: by their text
    return (type(value), value)


class _TracedMemo:
    """Outcomes of a pure function of a spec (placement, a whole-spec check), kept across
    chunks.  A deterministic function given a spec whose read leaves equal an earlier call's
    takes the same path: it reads the same leaves and returns the same outcome.  Leaves are
    keyed by value; objects read whole ("id") by identity (each entry holds its objects, so an
    id is not reused while the entry lives: section values are validated once per process)."""

    def __init__(self) -> None:
        self.read_sets: list[tuple[Item, ...]] = []
        self.outcomes: dict[tuple, tuple[list[Any], Any]] = {}

    def run(self, spec_of: Callable[[], Any], fn: Callable[[Any], Any], everything: set[str],
            field_of: Callable[[str], Any] | None = None, trace: bool = True) -> tuple[Any, set[Item]]:
        """``fn``'s outcome on the spec ``spec_of()`` and the items it read (every top-level
        field in ``everything``, whole, where it called a method of the spec itself).
        ``field_of`` reads one top-level field without building the spec (a memo hit then
        builds nothing).  Without ``trace`` (a caller with one member, which needs no split)
        ``fn`` runs on the spec itself, and nothing is looked up, read or kept: a member alone
        in its chunk with what it reads is seldom met again (random search), and the lookup
        and the tracing cost more than they save."""
        get = field_of or (lambda f: getattr(spec_of(), f))
        tried: dict[tuple[Item, ...], tuple[tuple, list[Any]]] = {}
        for items in self.read_sets if trace else ():
            key, held = tried[items] = self._key(items, get)
            hit = self.outcomes.get((items, key))
            if hit is not None and all(a is b for a, b in zip(hit[0], held)):
                return hit[1], set(items)
        spec = spec_of()
        if not trace:
            return fn(spec), set()
        read: set[Item] = set()
        try:
            outcome = fn(_traced(spec, (), read))
        except Exception:  # noqa: BLE001  something the tracer cannot follow: read it all
            return fn(spec), {((f,), "id") for f in everything}
        if ((), "id") in read:  # a method of the spec: it may read any field
            return outcome, {((f,), "id") for f in everything}
        items = tuple(sorted(read))
        if len(self.outcomes) >= _TRACED_MAX:  # random points: every one new, none coming back
            self.outcomes.clear()
        if items not in self.read_sets:
            self.read_sets.append(items)
        # the key this spec was looked up by, where it read a known set (random points: most)
        key, held = tried.get(items) or self._key(items, lambda f: getattr(spec, f))
        self.outcomes[(items, key)] = (held, outcome)
        return outcome, read

    @staticmethod
    def _key(items: tuple[Item, ...], get: Callable[[str], Any]) -> tuple[tuple, list[Any]]:
        tops: dict[str, Any] = {}
        parts, held = [], []
        for path, mode in items:
            top = tops.get(path[0], _ABSENT)
            if top is _ABSENT:
                top = tops[path[0]] = get(path[0])
            value = _walk(top, path[1:])
            parts.append(_part(value, mode))
            if mode == "id":
                held.append(value)
        return tuple(parts), held


def _item_codes(values: list[Any], index: np.ndarray, item: Item) -> np.ndarray:
    """Per member (``index`` into the distinct section objects ``values``), a code that is
    equal where ``item`` reads the same: the grouping a traced outcome may be shared over."""
    path, mode = item
    if len(path) == 1 and mode == "id":
        return index  # distinct objects (or finer: equal objects apart, which is still exact)
    if len(path) == 1:
        found = values
    else:
        try:  # the chain in C; a section absent on some value (None) takes the general walk
            found = list(map(operator.attrgetter(".".join(path[1:])), values))
        except AttributeError:
            found = [_walk(v, path[1:]) for v in values]
    if mode == "t" and len(set(map(type, found))) <= 1:
        return np.zeros(len(index), dtype=np.intp)
    if mode == "v" and found:
        kinds = set(map(type, found))
        column = None
        if kinds == {float}:  # by their bits: equal bits, equal value and repr (``_part``'s key)
            column = np.asarray(found, dtype=float).view(np.int64)
        elif kinds == {int} and -2**63 <= min(found) and max(found) < 2**63:
            column = np.asarray(found, dtype=np.int64)
        if column is not None:
            _, codes = np.unique(column, return_inverse=True)
            return np.asarray(codes, dtype=np.intp).ravel()[index]
    seen: dict[Any, int] = {}
    per = np.fromiter((seen.setdefault(_part(x, mode), len(seen)) for x in found),
                      dtype=np.intp, count=len(found))
    return per[index]


_TRACED_MAX = 50_000


def _traced_memo(space, tag: tuple) -> _TracedMemo:
    """The space's memo for ``tag`` (kept with its validated sections, and dropped with them)."""
    known = _section_cache(space)
    key = ("traced", *(id(t) if not isinstance(t, (str, tuple)) else t for t in tag))
    entry = known.get(key)
    if entry is None or any(a != b if isinstance(b, (str, tuple)) else a is not b
                            for a, b in zip(entry[0], tag)):
        entry = known[key] = (tag, _TracedMemo())
    return entry[1]


_LOWERED: dict[tuple, tuple[Job, Any]] = {}


def _lowered(job: Job, kind: Backend, workload, chip) -> Any:
    """The graph ``simulate`` costs on ``chip`` (the typed model lowered, then the chip's
    kernels: ``pipeline.typed_model``, ``pipeline.chip_graph``), memoised per process: a worker
    lowers once however many chunks it runs."""
    key = (id(job), kind.forced_weight_dtype(chip), repr(workload), kind.fusion_policy(chip))
    hit = _LOWERED.get(key)
    if hit is None or hit[0] is not job:
        if len(_LOWERED) > 16:
            _LOWERED.clear()
        spec = pipeline.typed_model(job.model, chip)
        hit = _LOWERED[key] = (job, pipeline.chip_graph(lower(spec, workload), chip))
    return hit[1]


_SHAPE_KEYS: dict[int, tuple[Any, list[tuple]]] = {}


def _shape_keys(graph) -> list[tuple]:
    """Each op's shape key (``sim.mapper._shape_key``), per lowered graph (memoised per process
    by ``_lowered``): an evolutionary search costs one small chunk per generation, and keying
    the ops again for each cost as much as costing them."""
    hit = _SHAPE_KEYS.get(id(graph))
    if hit is None or hit[0] is not graph:
        if len(_SHAPE_KEYS) > 16:
            _SHAPE_KEYS.clear()
        hit = _SHAPE_KEYS[id(graph)] = (graph, [_shape_key(op, spatial=False) for op in graph])
    return hit[1]


def _cost_keys(kind: Backend, graph, placement) -> list[tuple[Any, tuple]]:
    """Each op of ``graph`` with what its cost depends on beside the design point: its shape
    key, input density and region class; ops with equal keys cost the same.  Without a density
    profile or regions (every op dense, one class) the keys are the shape keys alone, kept per
    lowered graph as those are: an evolutionary search costs the same graph every generation."""
    if placement.density is None and not placement.regions:
        hit = _COST_KEYS.get(id(graph))
        if hit is None or hit[0] is not graph:
            if len(_COST_KEYS) > 16:
                _COST_KEYS.clear()
            hit = _COST_KEYS[id(graph)] = (graph, [(op, (*shape, 1.0, None))
                                                   for op, shape in zip(graph, _shape_keys(graph))])
        return hit[1]
    region_class = _region_classes(kind, graph, placement)
    return [(op, (*shape, common.op_density(op, placement), region_class.get(op.layer)))
            for op, shape in zip(graph, _shape_keys(graph))]


_COST_KEYS: dict[int, tuple[Any, list[tuple[Any, tuple]]]] = {}
_SECTIONS: dict[int, tuple[Any, dict[tuple, Any]]] = {}


def _section_cache(space) -> dict[tuple, Any]:
    """Validated section values of one space, kept for the process (bounded)."""
    entry = _SECTIONS.get(id(space))
    if entry is None or entry[0] is not space or len(entry[1]) > 200_000:
        if len(_SECTIONS) > 8:
            _SECTIONS.clear()
        entry = _SECTIONS[id(space)] = (space, {})
    return entry[1]


def _keep(stats: list[int]) -> bool:
    """Whether to keep one more validated value of a section for later chunks: always for the
    first 8,192, then while at least one in fifty lookups finds a kept one.  A random search
    meets each value once; keeping them all only grew the heap the garbage collector walks."""
    hits, kept = stats
    return kept < 8192 or hits * 50 >= kept


_DEMANDS: dict[tuple[int, str], tuple[Any, list[tuple[dict[str, Any], Any]]]] = {}


def _demand(kind, graph, hw, spec, workload) -> Any:
    """``kind.demand`` memoised per lowered graph (which fixes the model and workload): a spec
    that agrees with an earlier one on every field that call read gets its result."""
    key = (id(graph), kind.name)
    entry = _DEMANDS.get(key)
    if entry is None or entry[0] is not graph:
        if len(_DEMANDS) > 16:
            _DEMANDS.clear()
        entry = _DEMANDS[key] = (graph, [])
    for reads, need in entry[1]:
        if all(getattr(hw, f) == v for f, v in reads.items()):
            return need
    traced = _Reads(hw)
    need = kind.demand(graph, traced, spec, workload)
    if all(f in type(hw).model_fields for f in traced.read):
        entry[1].append(({f: getattr(hw, f) for f in traced.read}, need))
    return need


class _Group:
    """Points of one structure (same keys, same non-numeric values), costed together."""

    def __init__(self, job: Job, points: list[dict], members: np.ndarray, encoded: _Encoded,
                 table: _Table, notes: list[str] | None):
        self.job, self.points, self.members, self.table, self.notes = job, points, members, table, notes
        self.encoded, self.space = encoded, job.space
        self._item_cache: dict[Item, np.ndarray] = {}
        self._value_keys: dict[str, list[tuple[type, str]]] = {}

    def note(self, text: str) -> None:
        if self.notes is not None and text not in self.notes:
            self.notes.append(text)

    def one_by_one(self, local: np.ndarray | Sequence[int]) -> None:
        for j in local:
            self.table.scalar(self.job, int(self.members[j]))

    def run(self) -> None:
        space, members = self.space, self.members
        first = self.points[members[0]]
        # the base with the point's kind: which sections exist and, for those no point key or
        # derived key touches, their one value (the derived keys are not evaluated here: a
        # point they refuse is refused where its section is built)
        template = space.document(first, only="kind", derived={})
        kind_name = template.get("kind")
        if kind_name not in hardware.KINDS:
            self.one_by_one(range(len(members)))  # refused by the loader, as one by one
            return
        kind = hardware.KINDS[kind_name]
        cls = kind.spec
        sections = self.sections(cls, template)
        if sections is None:
            self.one_by_one(range(len(members)))
            return
        hws, invalid = self.validate(cls, template, sections, kind)
        self.one_by_one(invalid)
        refused = set(invalid)
        valid = [j for j in range(len(members)) if j not in refused]
        if valid and kind.spans_chips(hws[valid[0]]):
            self.note(f"kind '{kind_name}' chooses its own chip count and the fast path costs one "
                      f"chip: evaluated one by one")
            self.one_by_one(valid)
            return
        if valid:
            self.place_and_cost(kind, hws, valid, sections)

    def sections(self, cls, template: dict) -> dict[str, tuple[list, np.ndarray]] | None:
        """Per top-level field a point changes: its distinct validated values (None where the
        value is refused) and each member's index among them."""
        members, keys = self.members, self.encoded.keys
        codes = dict(zip(keys, self.encoded.index))
        out: dict[str, tuple[list, np.ndarray]] = {}
        for section, deps in section_dependencies(keys, self.space.spec.derived).items():
            if section not in template:
                return None  # the loader names the unknown key: let the scalar path say it
            reps, index = _distinct_rows([codes[k] for k in deps], len(members))
            known = _section_cache(self.space)
            # each key's value text per representative (plain lists: no numpy scalar per read)
            texts = []
            for dep in deps:
                text = self.value_keys(dep)
                texts.append([text[c] for c in codes[dep][reps].tolist()])
            derived = section in self.space.derived_sections
            # the keys written into the section (parameters, and derived keys whose values are
            # computed column-wise): what a leaf substitution replaces
            writes = [k for k in (*keys, *self.space.spec.derived) if k.partition(".")[0] == section]
            plan = _leaf_plan(cls, section, writes)
            substituted = _substitution(plan) if plan is not None else None
            base: Any = None  # a validated value of the section, for ``plan``
            stats = known.setdefault(("kept", section), [0, 0])  # [hits, values kept]
            # A section is a function of the keys it depends on: validated once per process
            # for each distinct value of those, however many chunks repeat it.
            # (a section written by derived keys alone has no keys: one value for every member)
            lookups = [(section, parts) for parts in zip(*texts)] if texts else [(section, ())] * len(reps)
            values = [known.get(key, _ABSENT) for key in lookups]
            missing = [k for k, v in enumerate(values) if v is _ABSENT]
            if plan is not None:
                base = next((v for v in values if isinstance(v, BaseModel)), None)
            stats[0] += len(values) - len(missing)
            # the derived keys of every missing value at once (column-wise); a point they
            # refuse is refused (None), and the scalar path gives its line
            rep_points = [self.points[i] for i in members[reps].tolist()]
            columns = derived_values(self.space, [rep_points[k] for k in missing]) \
                if missing and derived else None
            for position, k in enumerate(missing):
                point = rep_points[k]
                written = None
                if columns is not None:
                    if columns.errors[position] is not None:
                        values[k] = None
                        continue
                    written = columns.point(position)
                value: Any = _ABSENT
                if substituted is not None and base is not None:
                    with contextlib.suppress(_Whole):
                        value = substituted(base, point, written)
                if value is _ABSENT:
                    document = self.space.document(point, only=section, derived=written)
                    value = self.validated(cls, section, document[section])
                if plan is not None and base is None and isinstance(value, BaseModel):
                    base = value
                values[k] = value
                if _keep(stats):
                    known[lookups[k]] = value
                    stats[1] += 1
            out[section] = (values, np.asarray(index, dtype=np.intp).ravel())
        return out

    def value_keys(self, key: str) -> list[tuple[type, str]]:
        """Per distinct value of parameter ``key``, its type and text: what tells section values
        apart across chunks (1, 1.0 and True are different points)."""
        found = self._value_keys.get(key)
        if found is None:
            distinct = self.encoded.distinct[self.encoded.keys.index(key)]
            found = self._value_keys[key] = [(type(v), repr(v)) for v in distinct]
        return found

    def validated(self, cls, section: str, value: Any) -> Any:
        if not (isinstance(value, dict) and section in cls.model_fields):
            return value  # a plain top-level value: the whole-spec validation checks it
        try:
            return _adapter(cls, section).validate_python(value)
        except ValidationError:
            return None

    def validate(self, cls, template: dict, sections, kind=None) -> tuple[Any, list[int]]:
        """Each member's spec, built from validated sections (the kind's cross-section checks
        run here); members refused anywhere are listed in ``invalid``.

        Where the kind's only whole-spec checks are after-validators, each check runs once per
        distinct combination of the sections it reads (traced, as placement is), and specs are
        built only where something asks for them; otherwise every point is validated whole."""
        staged = dict(template)
        known = _section_cache(self.space)
        for name, value in template.items():
            if name not in sections:
                # no parameter touches it: one value for the whole space, validated once (and so
                # one object, which the traced memos below can key on)
                key = (name, "fixed", tuple(sorted(sections)))
                if key not in known:
                    known[key] = self.validated(cls, name, value)
                checked = known[key]
                if checked is None:
                    return [None] * len(self.members), list(range(len(self.members)))
                staged[name] = checked
        names = list(sections)
        lists = [sections[s][0] for s in names]
        checks = _after_checks(cls)
        if checks is not None and all(name in cls.model_fields for name in names):
            grouped = _GroupedSpecs.build(
                cls, staged, names, lists, [sections[s][1] for s in names], checks,
                lambda check: _traced_memo(self.space, ("check", check, tuple(sorted(sections)))),
                partial(self.item_codes, sections),
                partial(_passing_columns, kind, sections) if kind is not None else None)
            if grouped is not None:
                return grouped, grouped.invalid
        indices = [sections[s][1].tolist() for s in names]
        hws: list[Any] = []
        invalid: list[int] = []
        for j, row in enumerate(zip(*indices)):
            point = dict(staged)
            for name, values, code in zip(names, lists, row):
                point[name] = values[code]
            if any(point[s] is None for s in names):
                hws.append(None)
                invalid.append(j)
                continue
            try:
                hws.append(cls.model_validate(point))
            except ValidationError:
                hws.append(None)
                invalid.append(j)
        return hws, invalid

    def place_and_cost(self, kind, hws: list, valid: list[int], sections) -> None:
        job = self.job
        hw0 = hws[valid[0]]
        spec = pipeline.typed_model(job.model, hw0)
        workload = job.workload
        full = _lowered(job, kind, workload, hw0)
        full_need = _demand(kind, full, hw0, spec, workload)
        group_workload, groups = kind.microbatch(hw0, spec, workload)
        graph = full if group_workload == workload else _lowered(job, kind, group_workload, hw0)
        need = full_need if graph is full else _demand(kind, graph, hw0, spec, group_workload)

        if self.place_columns(kind, hws, valid, sections, full_need, need, graph, workload, groups):
            return
        # Placement reads a few sections: place once per distinct combination of those.
        outcomes: list[Any] = []
        placed: dict[int, list[int]] = defaultdict(list)
        for rows, outcome in self.place(kind, hws, np.asarray(valid, dtype=np.intp), full_need, need,
                                        sections, outcomes, ()):
            if isinstance(outcome, str):  # refused by the vectorised placement
                for i in self.members[rows].tolist():
                    self.table.fail(i, metrics.STATUS_NO_FIT, outcome)
                self.table.vectorised += len(rows)
            else:
                placed[outcome].extend(rows.tolist() if isinstance(rows, np.ndarray) else rows)

        by_layout: dict[tuple, list[int]] = defaultdict(list)
        for code, js in placed.items():
            pl = outcomes[code]
            layout = (tuple(sorted(pl.level_of.items())), tuple(pl.capacity), tuple(pl.regions))
            by_layout[layout].extend(js)
        for chunk in by_layout.values():
            chunk.sort()
            local = np.asarray(chunk, dtype=np.intp)
            try:
                self.cost_layout(kind, graph, hws[chunk[0]], local, sections, placed, outcomes,
                                 workload, groups)
            except Mixed as err:
                self.note(f"'{err}' differs within one layout: those points evaluated one by one")
                self.one_by_one(local)

    def place_columns(self, kind, hws, valid: list[int], sections, full_need, need, graph, workload,
                      groups) -> bool:
        """Placement of every member at once where the kind places column-wise
        (``Backend.allocate_columns``): the members that fit costed per layout, the others
        refused with the line ``allocate`` gives each.  False, with nothing done, where the
        kind places point by point or the members' specs do not form one column view."""
        local = np.asarray(valid, dtype=np.intp)
        try:
            view = spec_columns(hws[valid[0]], {s: (values, index[local]) for s, (values, index) in sections.items()},
                                len(local))
            found = kind.allocate_columns(full_need, view)
            if found is None:
                return False
            if need is not full_need:
                inner = kind.allocate_columns(need, view)
                if inner is None:
                    return False
                fits, placements = (found[0] >= 0) & (inner[0] >= 0), inner[1]
                layout = inner[0]
            else:
                fits, placements, layout = found[0] >= 0, found[1], found[0]
        except Mixed:
            return False
        # the refusal lines are ``allocate``'s own, found as ``place`` finds them (once per group
        # of members that agree on what the refusal reads); each must be a refusal there too
        refused = []
        for rows, outcome in self.place(kind, hws, local[~fits], full_need, need, sections, [], ()):
            if not isinstance(outcome, str):
                return False  # the column-wise rule disagrees: place point by point
            refused.append((rows, outcome))
        for rows, line in refused:
            for i in self.members[rows].tolist():
                self.table.fail(i, metrics.STATUS_NO_FIT, line)
            self.table.vectorised += len(rows)
        for code in np.unique(layout[fits]).tolist():
            rows = np.flatnonzero(fits & (layout == code))
            pl = placements[code]
            ready = replace(pl, capacity={k: np.asarray(v)[rows] for k, v in pl.capacity.items()},
                            regions={k: np.asarray(v)[rows] for k, v in pl.regions.items()})
            if workload.density is not None:
                ready = replace(ready, density=workload.density)
            members = local[rows]
            try:
                # every member in this layout: its columns are the view's (read once)
                self.cost_layout(kind, graph, hws[int(members[0])], members, sections, {}, [], workload,
                                 groups, ready, view if len(rows) == len(local) else None)
            except Mixed as err:
                self.note(f"'{err}' differs within one layout: those points evaluated one by one")
                self.one_by_one(members)
        return True

    def place(self, kind, hws: list, local: np.ndarray, full_need, need, sections,
              outcomes: list, fields: tuple[Item, ...]):
        """Yield (members, placement index or refusal line) covering ``local``.  Members that agree on
        the leaves ``fields`` are placed once, through a representative; placement is a pure
        function of the spec leaves it reads, so where the representative read only ``fields``
        its outcome holds for all of them, and otherwise they are split again on what it did read."""
        columns = [self.item_codes(sections, f)[local] for f in fields]
        reps, index = _distinct_rows(columns, len(local))
        memo = _traced_memo(self.space, ("place", kind.name, full_need, need, tuple(sorted(sections))))

        def allocate(traced: Any) -> Any:
            try:
                placement = kind.allocate(full_need, traced)
                if need is not full_need:
                    placement = kind.allocate(need, traced)
                return placement
            except DoesNotFitError as err:
                return err.one_line()

        if len(reps) == len(local) and isinstance(hws, _GroupedSpecs):
            # every member alone (random points): each placed on its own, untraced, nothing kept
            # -- ``memo.run(..., trace=False)`` for each, without the per-group machinery
            for j in local.tolist():
                placed = allocate(hws.spec_of(j, False))
                if not isinstance(placed, str):
                    outcomes.append(placed)
                    placed = len(outcomes) - 1
                yield [j], placed
            return
        for g, (rep, members) in enumerate(zip(reps.tolist(), _members(index, len(reps)))):
            rows = local[members]
            j = int(local[rep])
            if len(rows) == 1:  # alone: placed untraced, nothing kept (``memo.run(..., trace=False)``)
                placed = allocate(hws.spec_of(j, False) if isinstance(hws, _GroupedSpecs) else hws[j])
                if not isinstance(placed, str):
                    outcomes.append(placed)
                    placed = len(outcomes) - 1
                yield rows, placed
                continue
            spec_of: Callable[[], Any] = partial(hws.__getitem__, j)
            field_of = None
            if isinstance(hws, _GroupedSpecs):
                spec_of, field_of = partial(hws.spec_of, j, len(rows) > 1), hws.field_of(j)
            placed, read = memo.run(spec_of, allocate, set(sections), field_of, trace=len(rows) > 1)
            outcome: Any = placed
            if not isinstance(placed, str):
                outcomes.append(placed)
                outcome = len(outcomes) - 1
            varying = {item for item in read if item[0][0] in sections}  # the rest is shared
            if varying <= set(fields) or len(rows) == 1:
                yield rows, outcome
            else:
                yield from self.place(kind, hws, rows, full_need, need, sections, outcomes,
                                      tuple(sorted(varying | set(fields))))

    def item_codes(self, sections, item: Item) -> np.ndarray:
        """Per member, a code equal where ``item`` reads the same (kept for the group)."""
        codes = self._item_cache.get(item)
        if codes is None:
            values, index = sections[item[0][0]]
            codes = self._item_cache[item] = _item_codes(values, index, item)
        return codes

    def cost_layout(self, kind, graph, hw_first, local: np.ndarray, sections, placed, outcomes,
                    workload, groups, ready=None, view=None) -> None:
        """Cost the members ``local`` of one layout (their placement ``ready``, or made from the
        ``placed`` outcomes; ``view``: their spec columns where the caller has them)."""
        if view is None:
            view = spec_columns(hw_first, {s: (values, index[local]) for s, (values, index) in sections.items()},
                                len(local))
        placement = ready if ready is not None else self.placement(local, placed, outcomes, workload)
        p = kind.params(view)
        memo: dict[tuple, tuple[Any, Any]] = {}
        timed: list[_Timed] = []
        energy: Any = 0.0
        for op, key in _cost_keys(kind, graph, placement):
            hit = memo.get(key)
            if hit is None:
                hit = memo[key] = _best(kind, op, view, p, placement)
            timed.append(_Timed(op.layer, hit[0]))
            energy = energy + hit[1]
        step = pipeline.capped(kind.schedule(timed, view, workload, groups), energy * groups,
                               p["static"], p["cap"])
        shape = (len(local),)
        latency = np.broadcast_to(step.latency_s, shape)
        energy_total = pipeline.step_joules(energy, groups, 1, p["static"], 1, step.busy_s)
        chip = metrics.silicon(view, self.job.model)
        tokens_per_s = np.broadcast_to(step.throughput_tokens_per_s, shape)
        energy_total = np.broadcast_to(energy_total, shape)
        power = energy_total / latency
        usd = metrics.usd_per_mtoken(view, self.job.model, self.job.economics, power, tokens_per_s)
        breakeven = metrics.breakeven_mtokens(view, self.job.model, self.job.economics, self.job.reference,
                                              power, tokens_per_s)
        values = metrics.step_metrics(latency, tokens_per_s, energy_total, workload,
                                      metrics.Silicon(*(np.broadcast_to(v, shape) for v in (
                                          chip.area_mm2, chip.die_mm2, chip.dies, chip.reticle_limited))),
                                      np.broadcast_to(usd, shape), np.broadcast_to(breakeven, shape))
        self.table.put(self.members[local], values)
        self.table.vectorised += len(local)

    def placement(self, local: np.ndarray, placed, outcomes, workload):
        """One placement over the layout's members: capacities and region sizes as arrays."""
        code_of = np.empty(len(self.members), dtype=np.intp)
        for code, js in placed.items():
            code_of[js] = code
        codes = code_of[local]
        distinct, index = np.unique(codes, return_inverse=True)
        chosen = [outcomes[c] for c in distinct.tolist()]
        first = chosen[0]

        def column(attr: str) -> dict[str, np.ndarray]:
            keys = list(getattr(first, attr))
            # a layout's placements share their key order (``place_and_cost`` groups by it), so
            # the values are read as one flat run, in C, and cut into one column per key
            table = np.fromiter(itertools.chain.from_iterable(getattr(pl, attr).values() for pl in chosen),
                                dtype=float, count=len(chosen) * len(keys)).reshape(len(chosen), len(keys))
            return {k: table[:, i][index] for i, k in enumerate(keys)}
        out = replace(first, capacity=column("capacity"), regions=column("regions"))
        if workload.density is not None:
            out = replace(out, density=workload.density)
        return out


# Validating a section leaf by leaf.  A random point gives every section it touches values of
# its own, and validating each whole (from a document written for it) cost more than placing
# and costing the point.  Where the section's models validate field by field (no model or field
# validators, no annotated validator that reads other fields), a section that differs from an
# already validated one only at the point's keys is that one with those fields replaced, each
# validated alone with the field's own annotation and the model's config: the same values, and
# refused exactly where whole validation refuses (the refusal line then comes from the scalar
# path, as for any refused point).  Sections with derived keys are written and validated whole.

LeafPlan = list[tuple[str, tuple[str, ...], Any]]  # (point key, path in the section, leaf model)


def _leaf_plan(cls, section: str, deps: list[str]) -> LeafPlan | None:
    """Per key a section depends on: its path inside the section and the model that validates
    its field alone (or, for a key of a dict field, e.g. ``compute.matrix.int4``, one value of
    the dict); None where the section cannot be validated leaf by leaf.  A function of the
    spec class and the keys alone, worked out once per process for each (every chunk of a
    sweep asks again: an NSGA-II generation is one chunk, and the validators' signatures
    were read anew each time)."""
    key = (cls, section, tuple(deps))
    if key not in _LEAF_PLANS:
        if len(_LEAF_PLANS) >= 256:
            _LEAF_PLANS.clear()
        _LEAF_PLANS[key] = _plan_leaves(cls, section, deps)
    return _LEAF_PLANS[key]


_LEAF_PLANS: dict[tuple[Any, str, tuple[str, ...]], LeafPlan | None] = {}


def _plan_leaves(cls, section: str, deps: list[str]) -> LeafPlan | None:
    annotation: Any = cls.model_fields[section].annotation if section in cls.model_fields else None
    if not _field_by_field(annotation):
        return None
    if any(a != b and related_keys(a, b) for a in deps for b in deps):
        return None  # a key written inside another one's value: the document's order decides
    plan: LeafPlan = []
    for key in deps:
        head, _, rest = key.partition(".")
        if head != section or not rest:
            return None
        parts = tuple(rest.split("."))
        model: Any = annotation
        leaf: Any = None
        for depth, part in enumerate(parts):
            field_info = model.model_fields.get(part)
            if field_info is None:
                return None
            if depth == len(parts) - 2 and _plain_dict(field_info):
                leaf = _leaf_model(model, part, typing.get_args(field_info.annotation)[1])
                break
            if depth < len(parts) - 1:
                model = field_info.annotation
                if not _field_by_field(model):
                    return None
            elif not _alone(field_info):
                return None
        plan.append((key, parts, leaf if leaf is not None else _leaf_model(model, parts[-1])))
    return plan


def _plain_dict(field_info: Any) -> bool:
    """A ``dict`` field whose entries are validated one by one (no validator on the whole dict;
    a length bound is met by a dict whose existing entry is replaced)."""
    return (typing.get_origin(field_info.annotation) is dict
            and all(getattr(item, "func", None) is None for item in field_info.metadata))


def _field_by_field(model: Any) -> bool:
    """A pydantic model whose validation is its fields' validations, each on its own."""
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        return False
    decorators = model.__pydantic_decorators__
    return (not decorators.model_validators and not decorators.field_validators
            and not getattr(decorators, "root_validators", None)
            and model.model_post_init is BaseModel.model_post_init
            and all(_alone(f) for f in model.model_fields.values()))


def _alone(field_info: Any) -> bool:
    """A field whose annotated validators read only the value (one parameter: no ``info``,
    through which a validator could see the other fields)."""
    for item in field_info.metadata:
        func = getattr(item, "func", None)
        if func is None:
            continue
        try:
            parameters = inspect.signature(func).parameters
        except (TypeError, ValueError):
            return False
        if len(parameters) != 1:
            return False
    return True


_LEAF_MODELS: dict[tuple[type, str, Any], Any] = {}


def _leaf_model(model: type[BaseModel], name: str, entry: Any = None) -> Any:
    """A model of the one field ``name`` of ``model`` (or, with ``entry``, of one value of that
    dict field, of type ``entry``): its annotation, constraints and the model's config
    (strictness, no inf/NaN)."""
    leaf = _LEAF_MODELS.get((model, name, entry))
    if leaf is None:
        if entry is not None:
            spec: Any = (entry, ...)
            label = f"_{model.__name__}_{name}_entry"
        else:
            field_info = copy.copy(model.model_fields[name])
            spec = (field_info.annotation, field_info)
            label = f"_{model.__name__}_{name}"
        leaf = _LEAF_MODELS[(model, name, entry)] = create_model(label, __config__=model.model_config, value=spec)
    return leaf


class _Whole(Exception):
    """A leaf substitution that cannot stand for whole validation here (a dict entry the
    validated section does not hold): the section is validated whole."""


def _substitution(plan: LeafPlan) -> Callable[[BaseModel, dict[str, Any], dict[str, Any] | None], Any]:
    """For one plan, the function of (``base``, point, ``written``) giving ``base`` with the
    point's value at each planned path (validated alone), or None where a value is refused;
    ``written``: values of derived keys, read before the point's.  The plan's tree and leaf
    validators are looked up once (a random search substitutes every point's own values into
    each section it touches)."""
    tree = _tree(tuple(parts for _, parts, _ in plan))
    # the leaf model's own validator, as ``model_validate`` calls it (without its wrapper)
    leaves = [(key, leaf.__pydantic_validator__.validate_python) for key, _, leaf in plan]

    def substituted(base: BaseModel, point: dict[str, Any], written: dict[str, Any] | None) -> Any:
        values = []
        for key, validate in leaves:
            value = written[key] if written is not None and key in written else point[key]
            try:
                values.append(validate({"value": value}).value)
            except ValidationError:
                return None
        return _replaced(base, tree, values)
    return substituted


Tree = dict[str, Any]  # field name -> a leaf's position among the values, or the tree below it


@lru_cache(maxsize=256)
def _tree(paths: tuple[tuple[str, ...], ...]) -> Tree:
    """The planned paths as a tree of field names (worked out once per plan's paths)."""
    root: Tree = {}
    for position, parts in enumerate(paths):
        node = root
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = position
    return root


def _replaced(obj: BaseModel, tree: Tree, values: list[Any]) -> BaseModel:
    update: dict[str, Any] = {}
    for name, below in tree.items():
        if type(below) is int:
            update[name] = values[below]
            continue
        current = getattr(obj, name)
        if isinstance(current, dict):  # entries of a dict field (``_plain_dict``), replaced in place
            if any(type(v) is not int or k not in current for k, v in below.items()):
                raise _Whole
            update[name] = {**current, **{k: values[v] for k, v in below.items()}}
        else:
            update[name] = _replaced(current, below, values)
    return _copied(obj, update)


_set = object.__setattr__
_PLAIN_MODELS: dict[type, bool] = {}


def _copied(obj: BaseModel, update: dict[str, Any]) -> Any:
    """``obj.model_copy(update=update)``: what pydantic does for a model without extra fields
    or private attributes (a new instance with a copy of the field dict, updated, and the
    updated names added to the fields set), without its general-purpose copies, which cost
    more than the rest of a leaf substitution.  Other models go through ``model_copy``."""
    cls = type(obj)
    plain = _PLAIN_MODELS.get(cls)
    if plain is None:
        # no extra fields allowed and no private attributes: every instance has neither
        plain = _PLAIN_MODELS[cls] = (cls.model_config.get("extra") != "allow"
                                      and not getattr(cls, "__private_attributes__", None))
    if not plain:
        return obj.model_copy(update=update)
    new = cls.__new__(cls)
    fields = obj.__dict__.copy()
    fields.update(update)
    _set(new, "__dict__", fields)
    _set(new, "__pydantic_extra__", None)
    _set(new, "__pydantic_fields_set__", obj.__pydantic_fields_set__ | update.keys())
    _set(new, "__pydantic_private__", None)
    return new


def _passing_columns(kind, sections, proto, ok: np.ndarray) -> dict[str, np.ndarray]:
    """``kind.check_columns`` over the members ``ok`` (their sections seen column-wise around
    ``proto``), each answer a mask over ``ok``; empty where the view is mixed or the column form
    cannot be worked out (then every check runs as before)."""
    try:
        view = spec_columns(proto, {s: (values, index[ok]) for s, (values, index) in sections.items()}, len(ok))
        found = kind.check_columns(view)
        return {name: np.broadcast_to(np.asarray(mask, dtype=bool), (len(ok),)) for name, mask in found.items()}
    except (Mixed, ArithmeticError, ValueError, TypeError):
        return {}


def _after_checks(cls) -> list[Any] | None:
    """The spec class's whole-spec checks, when all are plain after-validators (functions of the
    built spec that raise on a bad one) and no field validator looks across fields; else None."""
    decorators = cls.__pydantic_decorators__
    if decorators.field_validators or getattr(decorators, "root_validators", None):
        return None
    checks = list(decorators.model_validators.values())
    if any(d.info.mode != "after" for d in checks):
        return None
    return [d.func for d in checks]


class _GroupedSpecs:
    """Members' specs, built on demand from their section indices (``hws[j]``), and which members
    a cross-section check refused.  A check is a pure function of the spec fields it reads, so
    members that agree on those share its outcome: it runs on one representative per distinct
    combination, split again on what the representative actually read."""

    def __init__(self, proto, names: list[str], lists: list[list], codes: list[np.ndarray],
                 memo: Callable[[Any], _TracedMemo] | None = None,
                 item_codes: Callable[[Item], np.ndarray] | None = None):
        self.proto, self.names, self.lists, self.codes = proto, names, lists, codes
        self._position = {name: k for k, name in enumerate(names)}
        self.invalid: list[int] = []
        self._built: dict[int, Any] = {}
        self._standins: dict[int, _Unbuilt] = {}
        self._item_cache: dict[Item, np.ndarray] = {}
        self._shared_codes = item_codes
        self.memo: Callable[[Any], _TracedMemo] = memo or (lambda check: _TracedMemo())

    @classmethod
    def build(cls, spec_cls, staged: dict, names: list[str], lists: list[list], codes: list[np.ndarray],
              checks: list[Any], memo: Callable[[Any], _TracedMemo] | None = None,
              item_codes: Callable[[Item], np.ndarray] | None = None,
              passing: Callable[[Any, np.ndarray], dict[str, np.ndarray]] | None = None) -> _GroupedSpecs | None:
        n = len(codes[0]) if codes else 0
        bad = np.zeros(n, dtype=bool)
        for values, index in zip(lists, codes):
            refused = np.array([v is None for v in values], dtype=bool)
            bad |= refused[index]
        ok = np.flatnonzero(~bad)
        if not len(ok):
            return None
        first = dict(staged)
        for name, values, index in zip(names, lists, codes):
            first[name] = values[index[ok[0]]]
        try:
            proto = spec_cls.model_validate(first)  # top-level plain values validated once here
        except ValidationError:
            return None  # let the whole-spec path refuse it point by point
        table = cls(proto, names, lists, codes, memo, item_codes)
        table._built[int(ok[0])] = proto
        # checks the kind judges column-wise run only where they might fail (``check_columns``)
        surely = passing(proto, ok) if passing is not None else {}
        for check in checks:
            mask = surely.get(check.__name__)
            asked = ok if mask is None else ok[~mask]
            if not len(asked):
                continue
            for rows, passed in table._outcomes(check, table.memo(check), asked, ()):
                if not passed:
                    bad[rows] = True
        table.invalid = np.flatnonzero(bad).tolist()
        for j in table.invalid:
            table._built[j] = None
        return table

    def _outcomes(self, check, memo: _TracedMemo, rows: np.ndarray, fields: tuple[Item, ...]):
        columns = [self.item_codes(f)[rows] for f in fields]
        reps, index = _distinct_rows(columns, len(rows))
        def passes(traced: Any) -> bool:
            try:
                check(traced)
                return True
            except (ValueError, AssertionError):
                return False

        if len(reps) == len(rows):
            # every member alone (random points): each checked on its own, untraced, nothing kept
            # -- ``memo.run(..., trace=False)`` for each, without the per-group machinery
            for j in rows.tolist():
                yield [j], passes(self.spec_of(j, False))
            return
        for g, (rep, positions) in enumerate(zip(reps.tolist(), _members(index, len(reps)))):
            members = rows[positions]
            j = int(rows[rep])
            if len(members) == 1:  # alone: checked untraced, nothing kept (``memo.run(..., trace=False)``)
                yield members, passes(self.spec_of(j, False))
                continue
            passed, read = memo.run(partial(self.spec_of, j, len(members) > 1), passes, set(self.names),
                                    self.field_of(j), trace=len(members) > 1)
            varying = {item for item in read if item[0][0] in self.names}  # the rest is the proto's
            if varying <= set(fields) or len(members) == 1:
                yield members, passed
            else:
                yield from self._outcomes(check, memo, members, tuple(sorted(varying | set(fields))))

    def item_codes(self, item: Item) -> np.ndarray:
        """Per member, a code equal where ``item`` reads the same (kept for the table, or the
        group's, which placement shares)."""
        if self._shared_codes is not None:
            return self._shared_codes(item)
        codes = self._item_cache.get(item)
        if codes is None:
            k = self.names.index(item[0][0])
            codes = self._item_cache[item] = _item_codes(self.lists[k], self.codes[k], item)
        return codes

    def field_of(self, j: int) -> Callable[[str], Any]:
        """Member ``j``'s fields as its spec holds them, read without building the spec."""
        position, lists, codes, proto = self._position, self.lists, self.codes, self.proto

        def field(name: str) -> Any:
            k = position.get(name)
            if k is None:
                return getattr(proto, name)
            return lists[k][codes[k][j]]
        return field

    def spec_of(self, j: int, traced: bool) -> Any:
        """Member ``j``'s spec for a function of it: the spec itself where it will be traced,
        else a stand-in that reads its fields without building it (a random point's check and
        placement read a few fields; building each point's spec cost as much as both)."""
        if traced:
            return self[j]
        hit = self._built.get(j, False)
        if hit is not False:
            return hit
        # one stand-in per member, kept: its check and its placement read the same fields
        standin = self._standins.get(j)
        if standin is None:
            standin = self._standins[j] = _Unbuilt(self.field_of(j), partial(self.__getitem__, j),
                                                   type(self.proto))
        return standin

    def __getitem__(self, j: int) -> Any:
        hit = self._built.get(j, False)
        if hit is False:
            update = {name: values[index[j]] for name, values, index in zip(self.names, self.lists, self.codes)}
            hit = self._built[j] = _copied(self.proto, update)
        return hit

    def __len__(self) -> int:
        return len(self.codes[0]) if self.codes else 0



class _Unbuilt:
    """A member's spec, unbuilt: its fields read from the validated sections (``field_of``),
    anything else (a method, a property) from the spec built on first need.  ``isinstance``
    sees the spec's class, as on ``_Traced``.  A field read is kept on the instance, so a
    function that reads it in a loop pays the lookup once."""

    def __init__(self, field: Callable[[str], Any], build: Callable[[], Any], cls: type):
        _set(self, "_field", field)
        _set(self, "_build", build)
        _set(self, "_class", cls)
        _set(self, "_names", _field_names(cls))

    @property  # type: ignore[misc]
    def __class__(self) -> type:
        return self._class

    def __getattr__(self, name: str) -> Any:
        if name in self._names:
            value = self._field(name)
            _set(self, name, value)
            return value
        return getattr(self._build(), name)


_FIELD_NAMES: dict[type, frozenset[str]] = {}


def _field_names(cls: type) -> frozenset[str]:
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = frozenset(getattr(cls, "model_fields"))  # noqa: B009  (mypy: a plain type)
    return names


def _region_classes(kind: Backend, graph, placement) -> dict[Any, Any]:
    """Layer -> what of the layer an op's cost depends on.  On spatial chips that is its region
    (``placement.regions``, keyed by ``Backend.region_key``): layers whose regions are equal on
    every point share one class, so identical layers are costed once."""
    if not placement.regions:
        return {}
    classes: dict[bytes, int] = {}
    return {layer: classes.setdefault(np.asarray(placement.regions[kind.region_key(layer)]).tobytes(),
                                      len(classes))
            for layer in {op.layer for op in graph}}


def _members(index: np.ndarray, groups: int) -> list[np.ndarray]:
    """Positions of each group's rows, in ascending order (``np.flatnonzero(index == g)`` for
    every g, found with one stable sort instead of one pass over the rows per group)."""
    order = np.argsort(index, kind="stable")
    return np.split(order, np.cumsum(np.bincount(index, minlength=groups))[:-1])


def _distinct_rows(columns: list[np.ndarray], n: int) -> tuple[np.ndarray, np.ndarray]:
    """For rows of small non-negative codes given column-wise: the first row of each distinct
    combination, and each row's combination number (rows packed into one integer each)."""
    if not columns:
        return np.zeros(1 if n else 0, dtype=np.intp), np.zeros(n, dtype=np.intp)
    radices = [int(c.max()) + 1 if n else 1 for c in columns]
    if math.prod(map(float, radices)) >= 2.0 ** 62:  # too many to pack: compare rows
        _, reps, index = np.unique(np.stack(columns, axis=1), axis=0, return_index=True, return_inverse=True)
        return reps, np.asarray(index, dtype=np.intp).ravel()
    packed = np.zeros(n, dtype=np.int64)
    for column, radix in zip(columns, radices):
        packed = packed * radix + column
    _, reps, index = np.unique(packed, return_index=True, return_inverse=True)
    return reps, np.asarray(index, dtype=np.intp).ravel()


def _best(kind, op, hw, p, placement) -> tuple[Any, Any]:
    """Per point, the mapping with the least time, then the least energy; ties keep the first
    listed (``sim.mapper.best_cost``'s rule, elementwise)."""
    best_t: np.ndarray | None = None
    best_e: np.ndarray = np.empty(0)
    for t in kind.terms_each(op, kind.mappings(op, hw), hw, p, placement):
        time_s, energy_j = np.asarray(t.time_s, dtype=float), np.asarray(t.energy_total, dtype=float)
        if best_t is None:
            best_t, best_e = time_s, energy_j
            continue
        better = (time_s < best_t) | ((time_s == best_t) & (energy_j < best_e))
        best_t = np.where(better, time_s, best_t)
        best_e = np.where(better, energy_j, best_e)
    return best_t, best_e


