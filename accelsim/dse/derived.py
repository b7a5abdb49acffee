"""A space's derived keys evaluated over many points at once, column by column.

``Space.document`` evaluates each derived key per point through Python floats.  A random
search gives every point new values, so that per-point walk of the expression (and of the
document it reads) cost more than validating the section it writes.  Here each expression is
evaluated once per batch over numpy arrays, with the same IEEE operations in the same order:
``+ - * /``, negation, ``sqrt`` and ``ceil`` are exact in numpy as in Python; ``**`` and
``log2`` (whose libm and numpy implementations may differ in the last bit) run per element
through Python itself; ``min``/``max`` keep Python's rule (the first argument unless a later
one compares smaller/larger, NaN included).  Where Python would raise (a division by zero, the
square root of a negative number, ``ceil`` of inf or NaN, any error in ``**`` or ``log2``), or
the result is not a finite number within ``MAX_QUANTITY``, the point is handed to the scalar
rule (``Space.document``), which gives its value or its refusal line, exactly as for one point.
Spaces whose derived keys read or write through another key's path (a parameter inside a
derived key's section path, a derived key under another) are evaluated point by point.
"""
from __future__ import annotations

import ast
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, cast

import numpy as np

from accelsim.config import units
from accelsim.dse.space import (
    _FUNCS,
    _OPS,
    Space,
    _compile,
    _dotted,
    _lookup,
    base_unit,
    dimension_of,
    to_number,
)
from accelsim.errors import ConfigError


@dataclass(frozen=True)
class DerivedColumns:
    """Per derived key, the value ``Space.document`` writes at each point (None where the point
    is refused), and per point the ``ConfigError`` it is refused with (None where it is not)."""

    values: dict[str, list[Any]]
    errors: list[ConfigError | None]

    def point(self, i: int) -> dict[str, Any]:
        """Point ``i``'s written values, for ``Space.document(..., derived=...)``."""
        return {key: column[i] for key, column in self.values.items()}


def derived_values(space: Space, points: list[dict[str, Any]]) -> DerivedColumns:
    """The derived keys of ``points``, each equal to what ``space.document(point)`` writes there
    (or the error it raises), computed column-wise where the space allows it."""
    derived = space.spec.derived
    n = len(points)
    keys = list(points[0]) if points else []
    if not derived or not n:
        return DerivedColumns({k: [None] * n for k in derived}, [None] * n)
    if any(len(p) != len(keys) for p in points) or any(list(p) != keys for p in points):
        return _per_point(space, points, np.ones(n, dtype=bool), {})
    columns = _columns(space, points, keys)
    if columns is None:
        return _per_point(space, points, np.ones(n, dtype=bool), {})
    written, flagged = columns
    return _per_point(space, points, flagged, written)


class _Unplanned(Exception):
    """A space this module does not evaluate column-wise (evaluated point by point instead)."""


def _columns(space: Space, points: list[dict[str, Any]], keys: list[str]) \
        -> tuple[dict[str, list[Any]], np.ndarray] | None:
    derived = list(space.spec.derived.items())
    targets = [k for k, _ in derived]
    for i, target in enumerate(targets):
        if any(related_keys(target, k) for k in keys) or any(related_keys(target, t) for t in targets[i + 1:]):
            return None  # a derived key written where a parameter or another derived key writes
    n = len(points)
    flagged = np.zeros(n, dtype=bool)
    numbers: dict[str, np.ndarray] = {}  # what a name reads, per point
    written: dict[str, list[Any]] = {}
    readers = {name for _, expr in derived for name in expression_names(expr)}

    def parameter(key: str) -> np.ndarray:
        column = np.empty(n)
        for i, p in enumerate(points):
            value = p[key]
            if isinstance(value, (list, dict, bool)):
                flagged[i] = True  # read from the document, or refused: the scalar rule says which
                column[i] = math.nan
                continue
            try:
                column[i] = to_number(value)
            except (ValueError, TypeError):
                flagged[i] = True
                column[i] = math.nan
        return column

    for position, (target, expr) in enumerate(derived):
        earlier = set(targets[:position])

        def value_of(name: str, earlier: set[str] = earlier, target: str = target) -> Any:
            if name in keys:
                if name not in numbers:
                    numbers[name] = parameter(name)
                return numbers[name]
            if name in earlier:
                return numbers[name]
            if any(related_keys(name, k) for k in (*keys, *earlier)):
                raise _Unplanned  # a section read whole, or a leaf under a written key
            try:
                return to_number(_lookup(space.base, name, space.source, f"derived.{target}"))
            except (ConfigError, ValueError, TypeError):
                raise _Unplanned from None  # every point fails alike: the scalar rule words it

        try:
            with np.errstate(all="ignore"):
                value, bad = _columnwise(expr)(value_of, n)
        except _Unplanned:
            return None
        value = np.broadcast_to(np.asarray(value, dtype=float), (n,))
        with np.errstate(invalid="ignore"):
            bad = bad | ~np.isfinite(value) | (np.abs(value) > units.MAX_QUANTITY)
        flagged |= bad
        template = _lookup(space.base, target, space.source, f"derived.{target}")
        dim = dimension_of(template) if isinstance(template, str) else None
        floats = value.tolist()
        if dim:
            unit = base_unit(dim)
            written[target] = [units.quantity_text(v, unit, dim) for v in floats]
        elif isinstance(template, int):
            written[target] = [round(v) if math.isfinite(v) else None for v in floats]
        else:
            written[target] = floats
        if target in readers:  # a later expression reads it back as the document holds it
            column = np.empty(n)
            for i, w in enumerate(written[target]):
                try:
                    column[i] = math.nan if flagged[i] else to_number(w)
                except (ValueError, TypeError):
                    flagged[i] = True
                    column[i] = math.nan
            numbers[target] = column
    return written, flagged


def _per_point(space: Space, points: list[dict[str, Any]], flagged: np.ndarray,
               written: dict[str, list[Any]]) -> DerivedColumns:
    """``written`` with the flagged points' values (or errors) taken from the scalar rule."""
    values = {key: list(written.get(key, [None] * len(points))) for key in space.spec.derived}
    errors: list[ConfigError | None] = [None] * len(points)
    for i in np.flatnonzero(flagged).tolist():
        try:
            document = space.document(points[i])
        except ConfigError as err:
            errors[i] = err
            for column in values.values():
                column[i] = None
            continue
        for key, column in values.items():
            column[i] = _lookup(document, key, space.source, f"derived.{key}")
    return DerivedColumns(values, errors)


def related_keys(a: str, b: str) -> bool:
    """Whether dotted keys ``a`` and ``b`` are one key or one holds the other."""
    return a == b or a.startswith(b + ".") or b.startswith(a + ".")


def expression_names(expr: str) -> list[str]:
    """Dotted config keys an expression reads (function names are not keys)."""
    found: list[str] = []

    def walk(node: ast.AST) -> None:
        if isinstance(node, (ast.Name, ast.Attribute)):
            found.append(_dotted(node))
            return
        for child in ast.iter_child_nodes(node):
            if not (isinstance(node, ast.Call) and child is node.func):
                walk(child)
    walk(_compile(expr))
    return found


Column = tuple[Any, Any]  # (values: a float array or number, bad: a bool array or False)
Evaluator = Callable[[Callable[[str], Any], int], Column]


def _python(fn: Callable[..., Any], n: int, *args: Any) -> Column:
    """``fn`` per element through Python floats (results whose libm and numpy versions may
    differ); an element where Python raises or gives a non-float is bad."""
    lists = [np.broadcast_to(np.asarray(a, dtype=float), (n,)).tolist() for a in args]
    out = np.empty(n)
    bad = np.zeros(n, dtype=bool)
    for i, xs in enumerate(zip(*lists)):
        try:
            y = fn(*xs)
        except (ArithmeticError, ValueError, TypeError):
            y = None
        if type(y) is float:
            out[i] = y
        else:
            bad[i] = True
            out[i] = math.nan
    return out, bad


@lru_cache(maxsize=256)
def _columnwise(expr: str) -> Evaluator:
    """``expr`` over columns: the operations of ``space._compiled`` element by element."""
    def build(node: ast.AST) -> Evaluator:
        if isinstance(node, ast.Expression):
            return build(node.body)
        if isinstance(node, ast.Constant):
            constant = float(cast(float, node.value))
            return lambda value_of, n: (constant, False)
        if isinstance(node, ast.UnaryOp):
            unary, operand = _OPS[type(node.op)], build(node.operand)

            def run_unary(value_of: Callable[[str], Any], n: int) -> Column:
                x, bad = operand(value_of, n)
                return unary(np.asarray(x, dtype=float)), bad
            return run_unary
        if isinstance(node, ast.BinOp):
            kind, left, right = type(node.op), build(node.left), build(node.right)

            def run_binary(value_of: Callable[[str], Any], n: int) -> Column:
                (a, bad_a), (b, bad_b) = left(value_of, n), right(value_of, n)
                bad = bad_a | bad_b
                a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
                if kind is ast.Pow:
                    y, bad_p = _python(lambda x, z: x ** z, n, a, b)
                    return y, bad | bad_p
                if kind is ast.Div:
                    bad = bad | (b == 0)  # Python raises ZeroDivisionError (0.0 and -0.0 alike)
                return _OPS[kind](a, b), bad
            return run_binary
        if isinstance(node, ast.Call):
            assert isinstance(node.func, ast.Name)  # _compile admits calls of _FUNCS by name
            name, args = node.func.id, [build(a) for a in node.args]

            def run_call(value_of: Callable[[str], Any], n: int) -> Column:
                evaluated = [a(value_of, n) for a in args]
                bad: Any = False
                for _, b in evaluated:
                    bad = bad | b
                xs = [np.asarray(x, dtype=float) for x, _ in evaluated]
                if name in ("min", "max"):
                    if len(xs) < 2:
                        raise _Unplanned  # Python's min of one float raises for every point
                    current = xs[0]
                    for x in xs[1:]:  # Python keeps the current one unless x compares past it
                        current = np.where(x < current if name == "min" else x > current, x, current)
                    return current, bad
                if len(xs) != 1:
                    raise _Unplanned
                x = xs[0]
                if name == "sqrt":
                    return np.sqrt(x), bad | (x < 0)
                if name == "ceil":  # math.ceil gives an int: no negative zero
                    return np.ceil(x) + 0.0, bad | ~np.isfinite(x)
                y, bad_f = _python(lambda v: float(_FUNCS[name](v)), n, x)
                return y, bad | bad_f
            return run_call
        dotted = _dotted(node)
        return lambda value_of, n: (value_of(dotted), False)
    return build(_compile(expr))

