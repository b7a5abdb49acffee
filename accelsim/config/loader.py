"""Find a config by name or path, load it with a safe YAML loader, validate it into a spec.

Every failure becomes a ``ConfigError`` whose single line names the file, the key path and
what is allowed, so the CLI can print it and exit 2 without a traceback.
"""
from __future__ import annotations

import copy
import difflib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from accelsim.errors import ConfigError

PACKAGE_ROOT = Path(__file__).resolve().parent.parent
BUNDLED_ROOTS = (PACKAGE_ROOT / "data", PACKAGE_ROOT.parent)

T = TypeVar("T", bound=BaseModel)
S = TypeVar("S")


# libyaml's C parser where PyYAML was built with it (about ten times faster); the duplicate-key
# check below is a constructor, which runs the same on either.
_SafeLoader: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _UniqueKeyLoader(_SafeLoader):
    """SafeLoader that refuses duplicate keys instead of keeping the last one silently."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False):
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key '{key}' (first on line {seen[key] + 1})", key_node.start_mark)
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


# Parsed documents by (path, text): a file is read on every load (so an edit is seen at once)
# but parsed again only when its text changed.  Callers get their own copy.
_PARSED: dict[tuple[str, str], dict[str, Any]] = {}
_PARSED_MAX = 64


def read_document(path: Path) -> dict[str, Any]:
    """Parse a YAML (or JSON, which is YAML) file into a mapping; one-line errors on failure."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"cannot read file ({err.strerror})", source=str(path)) from None
    key = (str(path), text)
    cached = _PARSED.get(key)
    if cached is None:
        cached = _parse(path, text)
        if len(_PARSED) >= _PARSED_MAX:
            _PARSED.pop(next(iter(_PARSED)))
        _PARSED[key] = cached
    return copy.deepcopy(cached)


def _parse(path: Path, text: str) -> dict[str, Any]:
    try:
        if path.suffix == ".json":
            data = json.loads(text)
        else:
            data = yaml.load(text, Loader=_UniqueKeyLoader)
    except json.JSONDecodeError as err:
        raise ConfigError(f"invalid JSON at line {err.lineno}: {err.msg}", source=str(path)) from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err)
        raise ConfigError(f"invalid YAML{where}: {problem}", source=str(path)) from None
    if not isinstance(data, dict):
        raise ConfigError("expected a mapping of keys to values at the top level", source=str(path))
    return data


def _key_path(loc: tuple) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif item in ("function-after", "function-before") or "[" in str(item):
            continue
        else:
            parts.append(("." if parts else "") + str(item))
    return "".join(parts) or "(top level)"


def _describe(error: ErrorDetails, model: type[BaseModel]) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        return "unknown key (check spelling; unknown keys are not ignored)"
    if kind == "missing":
        return "required key is missing"
    if kind == "literal_error":
        expected = error.get("ctx", {}).get("expected", "")
        return f"got {error.get('input')!r}, allowed: {expected}"
    if kind == "union_tag_invalid":
        ctx = error.get("ctx", {})
        return f"got {ctx.get('tag')!r}, allowed: {ctx.get('expected_tags')}"
    message = error["msg"]
    return message.removeprefix("Value error, ")


def validate(model: type[T], data: dict[str, Any], source: str) -> T:
    """Validate ``data`` into ``model``; the first problem becomes a one-line ConfigError."""
    try:
        return model.model_validate(data)
    except ValidationError as err:
        first = err.errors(include_url=False)[0]
        extra = len(err.errors()) - 1
        suffix = f" (and {extra} more problem{'s' if extra > 1 else ''})" if extra else ""
        raise ConfigError(_describe(first, model) + suffix, source=source,
                          key=_key_path(first["loc"])) from None


def bundled_names(folder: str) -> dict[str, Path]:
    """Names of the configs shipped in ``folder`` (``models`` or ``hw_configs``) -> path."""
    found: dict[str, Path] = {}
    for root in BUNDLED_ROOTS:
        directory = root / folder
        if directory.is_dir():
            for path in sorted(directory.glob("*.yaml")):
                found.setdefault(path.stem, path)
    return found


def resolve(name_or_path: str, folder: str, what: str) -> Path:
    """A config given as a path, or by name among the bundled ones (with a did-you-mean)."""
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml", ".json") or candidate.exists():
        if not candidate.is_file():
            raise ConfigError(f"no such {what} file", source=str(candidate))
        return candidate
    names = bundled_names(folder)
    if name_or_path in names:
        return names[name_or_path]
    close = difflib.get_close_matches(name_or_path, list(names), n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise ConfigError(f"unknown {what} '{name_or_path}'{hint} (known: {', '.join(names) or 'none'}; "
                      f"or give a path to a .yaml file)")


# Validated specs by (what built them, path, text): specs are frozen, so one object serves
# every caller until the file's text changes.
_SPECS: dict[tuple[Any, str, str], Any] = {}


def load_spec(path: Path, build: Callable[[dict[str, Any], str], S], tag: Any) -> S:
    """``build(document, source)`` for the file at ``path``, kept while its text is unchanged;
    ``tag`` names the builder (a spec class, or the hardware loader)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"cannot read file ({err.strerror})", source=str(path)) from None
    key = (tag, str(path), text)
    spec = _SPECS.get(key)
    if spec is None:
        spec = build(read_document(path), str(path))
        if len(_SPECS) >= _PARSED_MAX:
            _SPECS.pop(next(iter(_SPECS)))
        _SPECS[key] = spec
    return spec


def load(model: type[T], name_or_path: str, folder: str, what: str) -> T:
    path = resolve(name_or_path, folder, what)
    return load_spec(path, lambda document, source: validate(model, document, source), model)
