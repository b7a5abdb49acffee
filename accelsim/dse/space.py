"""A design space: a base hardware config, parameters varied by dotted key path, derived keys,
constraints and objectives, validated once from YAML.

Points are plain ``{dotted key: value}`` dicts written into a copy of the base config and
re-validated through the normal hardware loader, so a bad point fails exactly as a bad config
file would, with one line naming the key.
"""
from __future__ import annotations

import ast
import copy
import difflib
import hashlib
import json
import math
import operator
import re
from collections.abc import Callable
from functools import lru_cache
from json.encoder import encode_basestring_ascii as _encode_string
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np
from pydantic import Field, TypeAdapter, ValidationError, model_validator

from accelsim import hardware
from accelsim.config import loader, units
from accelsim.config.types import NonNegativeInt, PositiveInt, Spec
from accelsim.errors import ConfigError
from accelsim.hardware.spec import HardwareBase

METRICS: dict[str, str] = {
    "tokens_per_s_per_user": "tokens/s per user",
    "tokens_per_s": "tokens/s (chip)",
    "latency_s": "step latency (s)",
    "joules_per_token": "energy per token (J)",
    "power_w": "average power (W)",
    "area_mm2": "silicon per chip (mm²)",
    "die_mm2": "largest die (mm²)",
    "dies": "dies per chip",
    "reticle_limited": "split over reticles (0/1)",
    "usd_per_mtoken": "system cost per million tokens ($)",
    "breakeven_mtokens": "breakeven vs the reference merchant chip (Mtokens)",
}
Sense = Literal["max", "min"]
_DIMENSIONS = (units.SIZE, units.BANDWIDTH, units.FREQUENCY, units.THROUGHPUT, units.POWER,
               units.ENERGY, units.ENERGY_PER_BYTE, units.TIME, units.AREA, units.BIT_DENSITY,
               units.MONEY)
# Values per range, and points in a whole grid.  Sweeps stream their points, so the grid bound is
# not memory: it stops a mistyped grid (10^9 points would run for days) while leaving headroom over
# the million-point sweeps the runner is built for (a 1,000,181-point grid: ~1 min on 2 cores).
MAX_RANGE_POINTS = 10_000
MAX_GRID_POINTS = 5_000_000
_CONDITION = re.compile(r"^\s*([a-z_0-9]+)\s*(<=|>=)\s*([-+0-9.eE]+)\s*$")


@lru_cache(maxsize=4096)
def dimension_of(text: str) -> units.Dimension | None:
    """The physical dimension a quantity string belongs to, judged by its unit."""
    for dim in _DIMENSIONS:
        try:
            units.parse_quantity(text, dim)
        except units.UnitError:
            continue
        return dim
    return None


def base_unit(dim: units.Dimension) -> str:
    return next(u for u, scale in dim.units.items() if scale == 1.0)


def to_number(value: Any) -> float:
    """SI value of a parameter value: a number, or a string with a unit."""
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return _to_number(value)
    raise ValueError(f"expected a number or a quantity with a unit, got {value!r}")


@lru_cache(maxsize=65536)
def _to_number(value: str | float) -> float:
    if isinstance(value, bool):
        raise ValueError(f"expected a number or a quantity with a unit, got {value!r}")  # noqa: TRY004
    if isinstance(value, (int, float)):
        try:
            return float(value)
        except OverflowError:  # an int beyond float64: a ValueError like any other bad number
            raise ValueError(f"{str(value)[:40]}... is too large a number") from None
    dim = _dimension_by_unit(value)
    if dim is not None:
        try:
            return units.parse_quantity(value, dim)
        except units.UnitError:
            pass  # judged by the whole text below, as for any other string
    dim = dimension_of(str(value))
    if dim is None:
        raise ValueError(f"expected a number or a quantity with a unit like '3.35 TB/s', got {value!r}")
    return units.parse_quantity(value, dim)


def _dimension_by_unit(text: str) -> units.Dimension | None:
    """The dimension of ``text``'s last word as a unit (cached per unit): a sampled value such as
    '1.234e8 B' is new every time, its unit is not.  A guess; ``_to_number`` checks it by
    parsing ``text`` in that dimension, and judges the whole text when that fails."""
    number, space, unit = text.rpartition(" ")
    return dimension_of(f"1 {unit}") if space and number else None


class Range(Spec):
    """``num`` values from ``start`` to ``stop`` inclusive (numbers or quantities with units)."""

    start: float | str
    stop: float | str
    num: int = Field(ge=1, le=MAX_RANGE_POINTS)
    integer: bool = False


class Parameter(Spec):
    key: str = Field(min_length=1)
    values: list[Any] | None = None
    linear: Range | None = None
    log: Range | None = None

    @model_validator(mode="after")
    def _one_kind(self):
        given = [k for k in ("values", "linear", "log") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of values, linear, log (got {', '.join(given) or 'none'})")
        if self.values is not None and not self.values:
            raise ValueError("values must not be empty")
        for r in (self.linear, self.log):
            if r is not None:
                _range_unit(r)
                if r is self.log and (to_number(r.start) <= 0 or to_number(r.stop) <= 0):
                    raise ValueError("a log range needs start and stop > 0")
        return self

    @property
    def size(self) -> int:
        """Values a grid visits (before duplicates are dropped)."""
        r = self.linear or self.log
        return len(self.values) if self.values is not None else (r.num if r else 0)

    @property
    def range(self) -> Range:
        """The linear or log range of a parameter given as one (the spec holds exactly one of
        values, linear and log)."""
        r = self.linear or self.log
        if r is None:
            raise ValueError("a parameter with listed values has no range")
        return r

    @property
    def unit(self) -> str | None:
        r = self.linear or self.log
        return _range_unit(r) if r else None

    def grid(self) -> list[Any]:
        """The values a grid search visits, as they are written into the config."""
        if self.values is not None:
            return list(self.values)
        r = self.range
        lo, hi = to_number(r.start), to_number(r.stop)
        xs = np.linspace(lo, hi, r.num) if self.linear else np.geomspace(lo, hi, r.num)
        return _dedupe([self.encode(x) for x in xs])

    def sample(self, rng: np.random.Generator) -> Any:
        """One random value: uniform (linear), log-uniform (log) or a uniform pick (values)."""
        return self.sampler()(rng)

    def sampler(self) -> Callable[[np.random.Generator], Any]:
        """``sample`` with the range's bounds, logarithms and unit worked out once (a random
        search draws every parameter at every point): the same draws and the same arithmetic."""
        if self.values is not None:
            values = self.values
            return lambda rng: values[int(rng.integers(len(values)))]
        r = self.range
        lo, hi = to_number(r.start), to_number(r.stop)
        encode = self.encoder()
        if self.linear:
            return lambda rng: encode(lo + float(rng.random()) * (hi - lo))
        log_lo, log_span = math.log(lo), math.log(hi) - math.log(lo)
        return lambda rng: encode(math.exp(log_lo + float(rng.random()) * log_span))

    def columns(self) -> Callable[[np.ndarray], list[Any]]:
        """``sampler`` over an array of uniform draws (a range's parameter): the value drawn for
        each, by the same arithmetic."""
        r = self.range
        lo, hi = to_number(r.start), to_number(r.stop)
        encode = self.encoder()
        if self.linear:
            return lambda u: [encode(x) for x in (lo + u * (hi - lo)).tolist()]
        log_lo, log_span = math.log(lo), math.log(hi) - math.log(lo)
        exp = math.exp
        return lambda u: [encode(exp(x)) for x in (log_lo + u * log_span).tolist()]

    def encode(self, x: float) -> Any:
        return self.encoder()(x)

    def encoder(self) -> Callable[[float], Any]:
        """The value a number is written into the config as: an integer, or a number with 12
        significant digits (stable text for hashing and resuming), with the range's unit."""
        if self.range.integer:
            return lambda x: round(float(x))
        unit = self.unit
        if unit:
            dim = dimension_of(f"1 {unit}")
            if dim is not None:  # the text with its value recorded (a sampled value is new each time)
                return lambda x: units.quantity_text(float(f"{x:.12g}"), unit, dim)
            return lambda x: f"{float(f'{x:.12g}')!r} {unit}"
        return lambda x: float(f"{x:.12g}")


@lru_cache(maxsize=256)  # ranges are frozen; a random search asks for the unit at every draw
def _range_unit(r: Range) -> str | None:
    texts = [v for v in (r.start, r.stop) if isinstance(v, str)]
    if not texts:
        return None
    dims = [d for d in (dimension_of(t) for t in texts) if d is not None]
    if len(dims) != 2 or len({d.name for d in dims}) != 1:
        raise ValueError(f"start and stop must both be numbers or both quantities of one kind "
                         f"(got {r.start!r}, {r.stop!r})")
    return base_unit(dims[0])


def _dedupe(values: list[Any]) -> list[Any]:
    seen, out = set(), []
    for v in values:
        if v not in seen:
            seen.add(v)
            out.append(v)
    return out


class Condition(Spec):
    metric: str
    op: Literal["<=", ">="]
    value: float

    @classmethod
    def parse(cls, text: str, where: str) -> Condition:
        match = _CONDITION.match(text)
        if not match or match.group(1) not in METRICS:
            raise ConfigError(f"expected 'METRIC<=NUMBER' or 'METRIC>=NUMBER' with METRIC one of "
                              f"{', '.join(METRICS)}, got {text!r}", source=where)
        op: Literal["<=", ">="] = "<=" if match.group(2) == "<=" else ">="
        try:
            value = float(match.group(3))
        except ValueError:  # '1.2.3' or '--1' pass the character class
            value = math.nan
        if not math.isfinite(value):  # 1e400 reads as inf
            raise ConfigError(f"{text!r}: NUMBER must be a finite number (at most about 1.8e308 in size)",
                              source=where)
        return cls(metric=match.group(1), op=op, value=value)

    def holds(self, values):
        return values <= self.value if self.op == "<=" else values >= self.value

    def __str__(self) -> str:
        return f"{self.metric}{self.op}{self.value:g}"


class WorkloadSection(Spec):
    phase: Literal["prefill", "decode"] = "decode"
    batch: PositiveInt = 1
    prompt: PositiveInt = 2048
    context: NonNegativeInt = 2048


class Annotation(Spec):
    """A real cliff to mark on sensitivity plots: where ``key`` crosses ``at`` (a metric may
    also jump there), with the reason in words."""

    key: str
    at: float | str
    label: str = Field(min_length=3)


class SpaceSpec(Spec):
    name: str = Field(min_length=1)
    description: str = ""
    base: str = Field(min_length=1)
    set: dict[str, Any] = Field(default_factory=dict)
    parameters: list[Parameter] = Field(min_length=1)
    derived: dict[str, str] = Field(default_factory=dict)
    constraints: list[str] = Field(default_factory=list)
    objectives: dict[str, Sense] = Field(min_length=1)
    workload: WorkloadSection = WorkloadSection()
    annotations: list[Annotation] = Field(default_factory=list)
    source: str = ""

    @model_validator(mode="after")
    def _check_names(self):
        for metric in self.objectives:
            if metric not in METRICS:
                raise ValueError(f"unknown objective {metric!r}; allowed: {', '.join(METRICS)}")
        for text in self.constraints:
            match = _CONDITION.match(text)
            if not match or match.group(1) not in METRICS:
                raise ValueError(f"constraint {text!r} must read 'METRIC<=NUMBER' or 'METRIC>=NUMBER' "
                                 f"with METRIC one of {', '.join(METRICS)}")
        size = math.prod(p.size for p in self.parameters)
        if size > MAX_GRID_POINTS:
            raise ValueError(f"the grid has {size:,} points; the most a sweep enumerates is "
                             f"{MAX_GRID_POINTS:,} (use fewer values, or --search random)")
        keys = [p.key for p in self.parameters]
        if len(set(keys)) != len(keys):
            raise ValueError("a parameter key is listed twice")
        for expr in self.derived.values():
            _compile(expr)
        return self


class Space:
    """A loaded space: the spec, its file, and the base config document it varies."""

    def __init__(self, spec: SpaceSpec, source: str, base_source: str, base: dict[str, Any]):
        self.spec, self.source, self.base_source = spec, source, base_source
        for key, value in spec.set.items():
            _assign(base, key, value, self.source, f"set.{key}", create=True)
        self.base = base
        for i, p in enumerate(spec.parameters):
            template = _lookup(base, p.key, self.source, f"parameters[{i}].key")
            for j, value in enumerate(p.values or ()):
                _check_like(value, template, self.source, f"parameters[{i}].values[{j}]")
        for key in spec.derived:
            _lookup(base, key, self.source, f"derived.{key}")
        self.constraints = [Condition.parse(c, f"{source}: constraints") for c in spec.constraints]
        self._sections: dict[tuple, Any] = {}
        self.derived_sections = frozenset(key.partition(".")[0] for key in spec.derived)
        # The base must itself be a valid design before any point is tried.
        hardware.parse_hardware(copy.deepcopy(base), self.base_source)

    @property
    def parameters(self) -> list[Parameter]:
        return self.spec.parameters

    @property
    def keys(self) -> list[str]:
        return [p.key for p in self.spec.parameters]

    def document(self, point: dict[str, Any], only: str | None = None,
                 derived: dict[str, Any] | None = None) -> dict[str, Any]:
        """The base config with ``point`` and the derived keys written in (copied on write).

        With ``only`` (a top-level key), only that section is sure to be the point's: where no
        derived key is written into it, keys of other sections are not written and the derived
        keys not evaluated (a derived key is a function of the keys its section depends on, so
        its errors are met where that section is built).  ``derived``: the values this method
        would write at the derived keys, already computed (``dse.derived``, column-wise), which
        are written as they are (with ``only``, those of that section)."""
        doc = dict(self.base)
        copied: set[int] = set()  # dicts made for this document (alive with it: ids stay unique)
        whole = only is None or (derived is None and only in self.derived_sections)
        for key, value in point.items():
            if whole or key.partition(".")[0] == only:
                _assign(doc, key, value, self.source, key, copy_path=True, copied=copied)
        if derived is not None:
            for key, value in derived.items():
                if whole or key.partition(".")[0] == only:
                    _assign(doc, key, value, self.source, key, copy_path=True, copied=copied)
            return doc
        if self.spec.derived and whole:
            for key, expr in self.spec.derived.items():
                def value_of(name: str, where: str = f"derived.{key}") -> float:
                    if name in point and not isinstance(point[name], (list, dict)):
                        return to_number(point[name])  # only the keys an expression reads
                    return to_number(_lookup(doc, name, self.source, where))
                try:
                    value = _evaluate(expr, value_of)
                except (ArithmeticError, ValueError, TypeError) as err:
                    raise ConfigError(f"{expr!r} cannot be evaluated at this point ({err})",
                                      source=self.source, key=f"derived.{key}") from None
                if not math.isfinite(value) or abs(value) > units.MAX_QUANTITY:
                    raise ConfigError(f"{expr!r} gives {value:g} at this point (must be finite, "
                                      f"at most {units.MAX_QUANTITY:g})", source=self.source,
                                      key=f"derived.{key}")
                template = _lookup(doc, key, self.source, f"derived.{key}")
                dim = dimension_of(template) if isinstance(template, str) else None
                written = units.quantity_text(value, base_unit(dim), dim) if dim else (
                    round(value) if isinstance(template, int) else value)
                _assign(doc, key, written, self.source, key, copy_path=True, copied=copied)
        return doc

    def hardware(self, point: dict[str, Any]) -> HardwareBase:
        """Validate one design point through the normal hardware loader.

        Top-level sections that a point leaves as they are, or that equal a section an earlier
        point already validated, are passed in as the validated section objects (pydantic does
        not re-validate model instances); the kind's own cross-section checks always run.  Any
        section that fails is re-validated as plain data so the error reads as for a file."""
        doc = self.document(point)
        source = f"{self.source} point {describe(point)}"
        kind = doc.get("kind")
        if not isinstance(kind, str) or kind not in hardware.KINDS:
            return hardware.parse_hardware(doc, source)
        cls = hardware.KINDS[kind].spec
        touched = self._touched_sections(point)
        staged = dict(doc)
        for section, value in doc.items():
            if not isinstance(value, dict) or section not in cls.model_fields:
                continue
            key = (kind, section, repr(_leaves(value, touched.get(section, ()))))
            cached = self._sections.get(key)
            if cached is None:
                try:
                    cached = _adapter(cls, section).validate_python(value)
                except ValidationError:
                    return hardware.parse_hardware(doc, source)  # the one-line error, as for a file
                self._sections[key] = cached
            staged[section] = cached
        return hardware.parse_hardware(staged, source)

    def _touched_sections(self, point: dict[str, Any]) -> dict[str, tuple[str, ...]]:
        touched: dict[str, list[str]] = {}
        for key in (*point, *self.spec.derived):
            section, _, rest = key.partition(".")
            touched.setdefault(section, []).append(rest)
        return {k: tuple(v) for k, v in touched.items()}


@lru_cache(maxsize=256)
def _adapter(cls: type, section: str) -> TypeAdapter[Any]:
    annotation: Any = getattr(cls, "model_fields")[section].annotation
    return TypeAdapter(annotation)


def _check_like(value: Any, template: Any, source: str, where: str) -> None:
    """A listed value must be of the kind the base config holds at its key (a number for a
    number, a quantity of the same dimension for a quantity), so it fails here, by name, and not
    as arithmetic on text inside a derived key or the fast path."""
    if isinstance(template, bool) or not isinstance(template, (int, float, str)):
        if isinstance(value, (list, dict)) and not isinstance(template, (list, dict)):
            raise ConfigError(f"expected a single value, got {value!r}", source=source, key=where)
        return
    dim = dimension_of(template) if isinstance(template, str) else None
    if isinstance(template, str) and dim is None:
        if not isinstance(value, str):
            raise ConfigError(f"expected text like the base's {template!r}, got {value!r}",
                              source=source, key=where)
        return
    try:
        number = to_number(value)
    except (ValueError, units.UnitError):
        number = None
    same = dim is None and not isinstance(value, str) or dim is not None and dimension_of(str(value)) == dim
    if number is None or not math.isfinite(number) or not same:
        like = f"a {dim.name} like '{dim.example}'" if dim else f"a number like the base's {template!r}"
        raise ConfigError(f"expected {like}, got {value!r}", source=source, key=where)


def _leaves(section: dict, paths: tuple[str, ...]) -> tuple:
    """The values at ``paths`` inside a section (what a point can change there)."""
    out = []
    for path in paths:
        node: Any = section
        for part in path.split(".") if path else ():
            node = node.get(part) if isinstance(node, dict) else None
        out.append(node)
    return tuple(out)


def load_space(path: str | Path) -> Space:
    path = Path(path)
    if not path.is_file():
        candidate = loader.bundled_names("hw_configs/spaces").get(str(path))
        if candidate is None:
            raise ConfigError("no such design-space file (known: "
                              f"{', '.join(loader.bundled_names('hw_configs/spaces')) or 'none'})",
                              source=str(path))
        path = candidate
    spec = loader.validate(SpaceSpec, loader.read_document(path), str(path))
    base = loader.resolve(spec.base, "hw_configs", "hardware config")
    return Space(spec, str(path), str(base), loader.read_document(base))


def point_id(point: dict[str, Any]) -> str:
    """Stable identity of a design point: a hash of its parameters, independent of order."""
    return _hash(_json(point))


def point_ids(keys: list[str], distinct: list[list[Any]], index: list[np.ndarray]) -> list[str]:
    """``point_id`` of many points given column-wise: per key, its distinct values and each
    point's index among them.  The JSON text is assembled from per-value pieces, which is the
    text ``json.dumps`` writes for the whole dict (same separators, keys sorted)."""
    order = sorted(range(len(keys)), key=lambda i: keys[i])
    heads = {i: _json(keys[i]) + ":" for i in order}  # each key's JSON once, not once per value
    pieces = [[heads[i] + _json_value(v) for v in distinct[i]] for i in order]
    if not pieces:
        n = len(index[0]) if index else 0
        return [_hash("{}")] * n
    # the braces ride on the first and last pieces; each column is expanded to the points by
    # numpy (object arrays) and joined row by row in C
    pieces[0] = ["{" + p for p in pieces[0]]
    pieces[-1] = [p + "}" for p in pieces[-1]]
    columns = [np.array(p, dtype=object)[index[i]] for p, i in zip(pieces, order)]
    sha1 = hashlib.sha1
    return [sha1(text.encode()).hexdigest()[:16] for text in map(",".join, zip(*columns))]


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def _json_value(value: Any) -> str:
    """``_json(value)``, written directly for the plain values a point holds (the text
    ``json.dumps`` makes of them: its C string escaper, a finite float's or an int's repr)."""
    kind = type(value)
    if kind is str:
        return _encode_string(value)
    if kind is int or kind is float and math.isfinite(value):
        return repr(value)
    return _json(value)


def _hash(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def describe(point: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in point.items())


def _lookup(doc: dict, dotted: str, source: str, where: str) -> Any:
    node: Any = doc
    walked: list[str] = []
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            known = list(node) if isinstance(node, dict) else []
            close = difflib.get_close_matches(part, known, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise ConfigError(f"'{dotted}' is not a key of the base config ('{part}' not under "
                              f"'{'.'.join(walked) or '(top level)'}'; allowed: "
                              f"{', '.join(map(str, known)) or 'none'}){hint}", source=source, key=where)
        node = node[part]
        walked.append(part)
    return node


def _assign(doc: dict, dotted: str, value: Any, source: str, where: str, *, create: bool = False,
            copy_path: bool = False, copied: set[int] | None = None) -> None:
    """Write ``value`` at ``dotted``; ``copy_path`` copies each dict on the way (copy on write),
    except those in ``copied`` (ids of dicts this document already copied: a point writes
    several keys under one section)."""
    parts = dotted.split(".")
    node: Any = doc
    for depth, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None and create:
            child = {}
        elif not isinstance(child, dict):
            _lookup(doc, ".".join(parts[:depth + 1]) + "." + parts[depth + 1], source, where)
        if copy_path and child is not None and (copied is None or id(child) not in copied):
            child = dict(child)
            if copied is not None:
                copied.add(id(child))
        node[part] = child
        node = child
    if not create and parts[-1] not in node:
        _lookup(doc, dotted, source, where)
    node[parts[-1]] = copy.deepcopy(value) if isinstance(value, (list, dict)) else value


_OPS: dict[type, Callable[..., Any]] = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
        ast.Pow: operator.pow, ast.USub: operator.neg, ast.UAdd: operator.pos}
_FUNCS: dict[str, Callable[..., Any]] = {"min": min, "max": max, "ceil": math.ceil, "sqrt": math.sqrt, "log2": math.log2}


@lru_cache(maxsize=256)
def _compile(expr: str) -> ast.Expression:
    """Parse a derived-key expression: arithmetic on numbers, dotted config keys, min/max/ceil/
    sqrt/log2.  Nothing else is evaluated (no names, calls or attributes beyond these)."""
    try:
        tree = ast.parse(expr, mode="eval")
    except SyntaxError as err:
        raise ValueError(f"derived expression {expr!r} is not arithmetic: {err.msg}") from None
    for node in ast.walk(tree):
        ok = isinstance(node, (ast.Expression, ast.BinOp, ast.UnaryOp, ast.Constant, ast.Name,
                               ast.Attribute, ast.Call, ast.Load, *_OPS))
        if isinstance(node, ast.Call) and not (isinstance(node.func, ast.Name) and node.func.id in _FUNCS):
            ok = False
        if isinstance(node, ast.Constant) and not isinstance(node.value, (int, float)):
            ok = False
        if not ok:
            raise ValueError(f"derived expression {expr!r} may use only numbers, dotted config keys, "
                             f"+ - * / ** and {', '.join(_FUNCS)}")
    return tree


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    assert isinstance(node, ast.Attribute)  # _compile admits names and attributes only
    return f"{_dotted(node.value)}.{node.attr}"


def _evaluate(expr: str, value_of: Callable[[str], float]) -> float:
    return float(_compiled(expr)(value_of))


@lru_cache(maxsize=256)
def _compiled(expr: str) -> Callable[[Callable[[str], float]], Any]:
    """``expr`` as nested closures, built once: a random search evaluates each derived key at
    every point.  The same operations in the same order as walking the tree each time."""
    def build(node: ast.AST) -> Callable[[Callable[[str], float]], Any]:
        if isinstance(node, ast.Expression):
            return build(node.body)
        if isinstance(node, ast.Constant):
            constant = float(cast(float, node.value))
            return lambda value_of: constant
        if isinstance(node, ast.BinOp):
            op, left, right = _OPS[type(node.op)], build(node.left), build(node.right)
            return lambda value_of: op(left(value_of), right(value_of))
        if isinstance(node, ast.UnaryOp):
            unary, operand = _OPS[type(node.op)], build(node.operand)
            return lambda value_of: unary(operand(value_of))
        if isinstance(node, ast.Call):
            assert isinstance(node.func, ast.Name)  # _compile admits calls of _FUNCS by name
            func, args = _FUNCS[node.func.id], [build(a) for a in node.args]
            return lambda value_of: float(func(*(a(value_of) for a in args)))
        name = _dotted(node)
        return lambda value_of: value_of(name)
    return build(_compile(expr))
