"""A validated hardware spec seen column-wise: one stand-in object for many design points.

The fast path validates each distinct value of each top-level config section once; a design
point is then a row of section indices.  ``SpecColumns`` presents those rows as if they were one
spec whose numbers are arrays (one element per point), so a backend's ``params``, ``terms`` and
``schedule`` and the area model run unchanged on it: the formulas exist once, for one chip and
for many.  A leaf that is the same on every point stays the Python value the scalar path sees.
Anything that is not a number and differs between points (a name, a list, a present/absent
section) cannot become an array: reading it raises ``Mixed`` and the caller costs those points
another way.
"""
from __future__ import annotations

import operator
import types
from typing import Any

import numpy as np
from pydantic import BaseModel


class Mixed(Exception):
    """A non-numeric leaf differs between the points of one view."""


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _column(values: list[Any], index: np.ndarray, where: str) -> Any:
    """One field over the distinct section objects (every one used by some point), expanded to
    the points by ``index``."""
    first = values[0]
    if len(set(map(id, values))) == 1:  # one object (the checks below are set-wise, in C)
        return _wrap(first, np.zeros(len(index), dtype=np.intp), where)
    types = set(map(type, values))
    if types <= {int, float}:
        if len(types) == 1 and len(set(values)) == 1:  # equal, of one type
            return first
        return np.asarray(values, dtype=float)[index]
    if all(isinstance(v, BaseModel) for v in values):
        return SectionColumns(values, index, where)
    if all(isinstance(v, dict) for v in values):
        keys = list(first)
        if any(list(v) != keys for v in values):
            raise Mixed(where)
        return {k: _column([v[k] for v in values], index, f"{where}.{k}") for k in keys}
    if all(_is_number(v) for v in values):  # subclasses of int and float
        if all(v == first and type(v) is type(first) for v in values[1:]):
            return first
        return np.asarray(values, dtype=float)[index]
    if all(isinstance(v, bool) for v in values):
        return first if len(set(values)) == 1 else np.asarray(values, dtype=bool)[index]
    if all(v == first for v in values[1:]):
        return _wrap(first, np.zeros(len(index), dtype=np.intp), where)
    raise Mixed(where)


def _wrap(value: Any, index: np.ndarray, where: str) -> Any:
    """A value shared by every point: a section keeps a column view (so its methods still see
    columns); containers of plain values are returned as they are."""
    if isinstance(value, BaseModel):
        return SectionColumns([value], index, where)
    if isinstance(value, dict) and any(isinstance(v, BaseModel) for v in value.values()):
        return {k: _wrap(v, index, f"{where}.{k}") for k, v in value.items()}
    return value


class SectionColumns:
    """A pydantic section (or the whole spec) over design points: ``objects`` are the distinct
    validated objects, ``index[i]`` the one point ``i`` uses.  Fields are read lazily and kept;
    the spec class's methods are bound to the view, so ``hw.matrix_peak(d)`` reads columns.
    A field read is kept as an instance attribute: the formulas read the same fields for every
    op and mapping, and a later read then finds it without calling ``__getattr__``."""

    def __init__(self, objects: list[BaseModel], index: np.ndarray, where: str = "",
                 fields: dict[str, tuple[list[Any], np.ndarray]] | None = None):
        self._objects, self._index, self._where = objects, index, where
        self._fields = fields or {}

    def __getattr__(self, name: str) -> Any:
        # only names not yet read come here (fields never start with "_", the view's own do)
        if name.startswith("_"):
            raise AttributeError(name)
        cls = type(self._objects[0])
        # a field is never a method (and asking the model class for it costs an AttributeError)
        attr = getattr(cls, name, None) if name not in cls.model_fields else None
        if callable(attr):
            value = types.MethodType(attr, self)
        elif name in self._fields:
            values, index = self._fields[name]
            value = _column(values, index, f"{self._where}{name}")
        else:
            # the field of every distinct object, read in C (a random point's sections are its own)
            value = _column(list(map(operator.attrgetter(name), self._objects)), self._index,
                            f"{self._where}{name}")
        self.__dict__[name] = value
        return value

    def __len__(self) -> int:
        return len(self._index)


def spec_columns(template: BaseModel, sections: dict[str, tuple[list[Any], np.ndarray]],
                 points: int) -> SectionColumns:
    """The spec ``template`` with each field in ``sections`` replaced by (distinct validated
    values, index per point); other fields are ``template``'s, shared by all points.  Values no
    point uses (another layout's, or refused ones) are dropped first."""
    used: dict[str, tuple[list[Any], np.ndarray]] = {}
    for name, (values, index) in sections.items():
        kept, compact = np.unique(index, return_inverse=True)
        used[name] = ([values[i] for i in kept.tolist()], np.asarray(compact, dtype=np.intp).ravel())
    return SectionColumns([template], np.zeros(points, dtype=np.intp), "", used)
