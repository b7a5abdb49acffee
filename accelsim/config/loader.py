"""Find a config by name or path, load it with a safe YAML loader, validate it into a spec.

Every failure becomes a ``ConfigError`` whose single line names the file, the key path and
what is allowed, so the CLI can print it and exit 2 without a traceback.
"""
from __future__ import annotations

import copy
import csv
import difflib
import errno
import io
import itertools
import json
import os
import re
import stat
import time
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic_core import ErrorDetails

from accelsim.errors import ConfigError

PACKAGE_ROOT = Path(__file__).resolve().parent.parent
BUNDLED_ROOTS = (PACKAGE_ROOT / "data", PACKAGE_ROOT.parent)

T = TypeVar("T", bound=BaseModel)
S = TypeVar("S")

# Limits checked before (or while) parsing, so a hostile file ends in one line, not a
# RecursionError, minutes of parsing or a memory blow-up.  The largest bundled config is a few
# kB and the deepest about 5 levels: these leave a wide margin for real files.
MAX_CONFIG_BYTES = 8 * 2**20
MAX_DEPTH = 64
MAX_NODES = 1_000_000  # YAML nodes after expanding aliases (a "billion laughs" file is refused)


# The pure-Python loader is the reference: its composer is where nesting depth and alias
# expansion are bounded (the C composer offers no hook), and its messages are the ones users
# see.  libyaml's loader (``_CUniqueKeyLoader``, below) parses first where it is installed; its
# result is kept only when the composed nodes are within the same limits with no alias at all,
# and anything else (an error, an alias, too deep, too many nodes) goes to this loader, so
# every outcome is this loader's.  Parsed documents are cached by text below, too.
class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys instead of keeping the last one silently, and
    bounds nesting depth and alias expansion while composing (the composer recurses per level)."""

    def __init__(self, stream):
        super().__init__(stream)
        self._depth = 0
        self._nodes = 0
        self._sizes: dict[str, int] = {}

    def compose_node(self, parent, index):
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            self._count(self._sizes.get(event.anchor or "", 1), event.start_mark)
            return super().compose_node(parent, index)
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise yaml.composer.ComposerError(
                None, None, f"nested deeper than {MAX_DEPTH} levels (the most allowed)", event.start_mark)
        start = self._nodes
        self._count(1, event.start_mark)
        node = super().compose_node(parent, index)
        anchor = getattr(event, "anchor", None)
        if anchor:
            self._sizes[anchor] = self._nodes - start
        self._depth -= 1
        return node

    def _count(self, nodes: int, mark) -> None:
        self._nodes += nodes
        if self._nodes > MAX_NODES:
            raise yaml.composer.ComposerError(
                None, None, f"more than {MAX_NODES} values once aliases are expanded (the most "
                            f"allowed)", mark)


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False):
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if not isinstance(key, (str, int, float, bool)) and key is not None:
            raise yaml.constructor.ConstructorError(
                None, None, f"a key must be a name, got a {type(key).__name__}", key_node.start_mark)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key '{key}' (first on line {seen[key] + 1})", key_node.start_mark)
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)

_C_LOADER = getattr(yaml, "CSafeLoader", None) if yaml.__with_libyaml__ else None
if _C_LOADER is not None:
    class _CUniqueKeyLoader(_C_LOADER):  # type: ignore[valid-type, misc]
        """libyaml's parser and composer, with the same duplicate-key constructor."""

    _CUniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _load_yaml(text: str) -> Any:
    """``text`` parsed by libyaml when its composed nodes pass the pure-Python loader's limits
    with no alias (libyaml itself stops nesting at 1,000 levels, so composing cannot run away);
    otherwise, and on any error, by the pure-Python loader, whose outcome and message stand."""
    if _C_LOADER is not None:
        try:
            loader = _CUniqueKeyLoader(text)
            try:
                node = loader.get_single_node()
                if node is not None and _plain_tree(node):
                    return loader.construct_document(node)
            finally:
                loader.dispose()
        except Exception:  # noqa: BLE001  (whatever it was, the reference loader says it below)
            pass
    return yaml.load(text, Loader=_UniqueKeyLoader)


def _plain_tree(root: yaml.Node) -> bool:
    """Whether the composed nodes form a tree (an alias would make a node appear twice) within
    MAX_DEPTH levels and MAX_NODES nodes, counted as the pure-Python composer counts them."""
    seen: set[int] = set()
    stack: list[tuple[yaml.Node, int]] = [(root, 1)]
    while stack:
        node, depth = stack.pop()
        if id(node) in seen or depth > MAX_DEPTH or len(seen) >= MAX_NODES:
            return False
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            stack.extend((child, depth + 1) for pair in node.value for child in pair)
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((child, depth + 1) for child in node.value)
    return True


# Parsed documents by (path, text): a file is read on every load (so an edit is seen at once)
# but parsed again only when its text changed.  Callers get their own copy.
_PARSED: dict[tuple[str, str], dict[str, Any]] = {}
_PARSED_MAX = 64


# The text of small files read before, by path, with the status they had when read (device,
# inode, size, modification and change times).  A file whose status is unchanged is not read
# again, but only where both its times were older than the read by more than ``_SETTLED_NS``:
# any later write (or rename onto the path, or ``utime``) sets the change time to the clock's
# time then, which lies past such a file's recorded one even on file systems whose times tick
# coarsely (ext4 and tmpfs by the kernel's tick, FAT by 2 s), so an edit is always seen; a file
# written just before it was read is read again on every load until it has settled.
_TEXTS: dict[str, tuple[tuple[int, int, int, int, int], str]] = {}
_TEXTS_KEPT = 64
_TEXT_KEPT_BYTES = 1 << 20  # configs are a few KiB; traces and tables are read each time
_SETTLED_NS = 3_000_000_000


def _now_ns() -> int:
    return time.time_ns()


def read_text(path: str | Path, what: str = "file", *, max_bytes: int = MAX_CONFIG_BYTES) -> str:
    """The UTF-8 text of a file, refused by size before any byte is read and by encoding with
    the offset of the first bad byte; every input file accelsim reads comes through here."""
    source = str(path)
    try:
        before = _now_ns()
        info = os.stat(source)
        if not stat.S_ISREG(info.st_mode):  # /dev/zero or a pipe would be read forever
            raise ConfigError(f"{what} is not a regular file", source=source)
        if info.st_size > max_bytes:
            raise ConfigError(f"{what} is {info.st_size / 2**20:.1f} MiB; the most allowed is "
                              f"{max_bytes / 2**20:g} MiB", source=source)
        status = (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)
        kept = _TEXTS.get(source)
        if kept is not None and kept[0] == status:
            return kept[1]
        data = _read_upto(source, info.st_size, max_bytes + 1)  # a file growing while read stops too
        if len(data) > max_bytes:
            raise ConfigError(f"{what} is over the {max_bytes / 2**20:g} MiB allowed", source=source)
    except OSError as err:
        raise ConfigError(f"cannot read {what} ({err.strerror or err})", source=source) from None
    try:
        text = data.decode("utf-8-sig")  # a leading byte-order mark (Excel, Notepad) is no header text
    except UnicodeDecodeError as err:
        raise ConfigError(f"not UTF-8 text (byte 0x{data[err.start]:02x} at offset {err.start}); "
                          f"save the {what} as UTF-8", source=source) from None
    settled = max(info.st_mtime_ns, info.st_ctime_ns) < before - _SETTLED_NS
    if settled and len(data) == info.st_size <= _TEXT_KEPT_BYTES:
        if len(_TEXTS) >= _TEXTS_KEPT:
            _TEXTS.pop(next(iter(_TEXTS)))
        _TEXTS[source] = (status, text)
    else:
        _TEXTS.pop(source, None)
    return text


_PIECE = 1 << 16  # the least asked of one read: a file that grows after the stat is read in these


def _read_upto(source: str, size: int, limit: int) -> bytes:
    """At most ``limit`` bytes of the file, read in pieces of its stated ``size`` (plus one, to
    see it end): asking a buffered file for ``limit`` bytes at once allocates that much first,
    ~40 us a call for a config of a few KiB, which a one-by-one loop pays on every name."""
    fd = os.open(source, os.O_RDONLY)
    try:
        pieces: list[bytes] = []
        total = 0
        while total < limit:
            piece = os.read(fd, min(max(size + 1, _PIECE), limit - total))
            if not piece:
                break
            pieces.append(piece)
            total += len(piece)
    finally:
        os.close(fd)
    return b"".join(pieces)


def read_csv(path: str | Path, what: str = "file", *, max_bytes: int = MAX_CONFIG_BYTES) -> list[dict[str, str]]:
    """The rows of a CSV file with a header, read through ``read_text`` (size and UTF-8 checks);
    a malformed file is one line."""
    text = read_text(path, what, max_bytes=max_bytes)
    reader = csv.DictReader(io.StringIO(text, newline=""), restkey=_EXTRA)
    rows: list[dict[str, str]] = []
    try:
        for row in reader:
            # A row longer or shorter than the header has its values under the wrong columns
            # (or none): refused by line rather than read with a field dropped or left empty.
            short = sum(value is None for value in row.values())
            if short or _EXTRA in row:
                names = reader.fieldnames or ()
                got = len(names) - short + len(row.get(_EXTRA, ()))
                raise ConfigError(f"line {reader.line_num}: {got} fields but the header names "
                                  f"{len(names)} ({', '.join(names)})", source=str(path))
            rows.append(row)
    except csv.Error as err:
        raise ConfigError(f"not a CSV {what}: {err}", source=str(path)) from None
    return rows


_EXTRA = "\0extra"  # DictReader's key for the fields past the header's (no real column name)


_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_JSON_BRACKETS = re.compile(r"[\[\]{}]")


def _json_depth(text: str) -> int:
    """Deepest bracket nesting outside strings, found without recursing (json.loads would)."""
    steps = (1 if b in "[{" else -1 for b in _JSON_BRACKETS.findall(_JSON_STRING.sub("", text)))
    return max(itertools.accumulate(steps, initial=0))


def parse_text(text: str, source: str, *, as_json: bool) -> Any:
    """Parse YAML or JSON text with the depth, size and duplicate-key rules; one-line errors."""
    try:
        if as_json:
            if _json_depth(text) > MAX_DEPTH:
                raise ConfigError(f"invalid JSON: nested deeper than {MAX_DEPTH} levels (the most "
                                  f"allowed)", source=source)
            return json.loads(text)  # NaN/Infinity parse; the typed fields refuse them by key
        return _load_yaml(text)
    except json.JSONDecodeError as err:
        raise ConfigError(f"invalid JSON at line {err.lineno}: {err.msg}", source=source) from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err)
        raise ConfigError(f"invalid YAML{where}: {problem}", source=source) from None
    except (ValueError, RecursionError) as err:  # e.g. an integer of more than 4300 digits
        kind = "JSON" if as_json else "YAML"
        raise ConfigError(f"invalid {kind}: {' '.join(str(err).split())[:200]}", source=source) from None


def read_document(path: Path) -> dict[str, Any]:
    """Parse a YAML (or JSON, which is YAML) file into a mapping; one-line errors on failure."""
    return _document(path, read_text(path))


def _document(path: Path, text: str) -> dict[str, Any]:
    key = (str(path), text)
    cached = _PARSED.get(key)
    if cached is None:
        data = parse_text(text, str(path), as_json=path.suffix == ".json")
        if not isinstance(data, dict):
            raise ConfigError("expected a mapping of keys to values at the top level", source=str(path))
        if len(_PARSED) >= _PARSED_MAX:
            _PARSED.pop(next(iter(_PARSED)))
        _PARSED[key] = cached = data
    return copy.deepcopy(cached)


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


@lru_cache(maxsize=64)
def _adapter(kind: Any) -> TypeAdapter:
    return TypeAdapter(kind)


def validate_value(kind: Any, value: Any, source: str, key: str, *, strict: bool = True) -> Any:
    """One field validated by the same types and messages as a spec's fields (for readers of
    foreign formats, e.g. Hugging Face configs); strict: no '4096' for 4096, no true for 1."""
    try:
        return _adapter(kind).validate_python(value, strict=strict)
    except ValidationError as err:
        first = err.errors(include_url=False)[0]
        message = _describe(first, BaseModel)
        if first["type"] in ("int_type", "float_type", "string_type", "bool_type", "list_type",
                             "literal_error", "int_from_float"):
            message = f"{message}, got {value!r}"[:300]
        raise ConfigError(message, source=source, key=key) from None


def bundled_names(folder: str) -> dict[str, Path]:
    """Names of the configs shipped in ``folder`` (``models`` or ``hw_configs``) -> path."""
    return dict(_bundled(folder))


def _bundled(folder: str) -> dict[str, Path]:
    """``bundled_names`` itself (shared: read it, never change it)."""
    return _bundled_names(folder, tuple(_mtime(os.path.join(root, folder)) for root in BUNDLED_ROOTS))


def _mtime(directory: str) -> int | None:
    try:
        return os.stat(directory).st_mtime_ns
    except OSError:
        return None


# Keyed by the folders' modification times (a file added, removed or renamed changes them), so a
# loop resolving names by the thousand stats two folders instead of listing them.
@lru_cache(maxsize=32)
def _bundled_names(folder: str, mtimes: tuple[int | None, ...]) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for root in BUNDLED_ROOTS:
        directory = root / folder
        if directory.is_dir():
            for path in sorted(directory.glob("*.yaml")):
                found.setdefault(path.stem, path)
    return found


def resolve(name_or_path: str, folder: str, what: str) -> Path:
    """A config given as a path, or by name among the bundled ones (with a did-you-mean)."""
    if not name_or_path.strip():  # '' would read as the current folder, '  ' as a file name
        raise ConfigError(f"an empty {what} name (known: {', '.join(_bundled(folder)) or 'none'}; "
                          f"or give a path to a .yaml file)")
    candidate = Path(name_or_path)
    shown = name_or_path if len(name_or_path) <= 80 else f"{name_or_path[:77]}..."
    mode = _mode(str(candidate), what, shown)  # str(Path): "" is ".", as Path.exists reads it
    exists, is_file = mode is not None, mode is not None and stat.S_ISREG(mode)
    if candidate.suffix in (".yaml", ".yml", ".json") or exists:
        if not is_file:
            raise ConfigError(f"no such {what} file", source=shown)
        return candidate
    names = _bundled(folder)
    if name_or_path in names:
        return names[name_or_path]
    close = difflib.get_close_matches(shown, list(names), n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise ConfigError(f"unknown {what} '{shown}'{hint} (known: {', '.join(names) or 'none'}; "
                      f"or give a path to a .yaml file)")


# What Path.exists treats as "not there" rather than as an error.
_ABSENT = frozenset((errno.ENOENT, errno.ENOTDIR, errno.EBADF, errno.ELOOP))


def _mode(path: str, what: str, shown: str) -> int | None:
    """The file mode at ``path`` (links followed), None where nothing is: one stat, where
    ``Path.exists`` and ``Path.is_file`` take one each."""
    try:
        return os.stat(path).st_mode
    except ValueError:  # an embedded NUL byte: no such file, as Path.exists says
        return None
    except OSError as err:
        if err.errno in _ABSENT:
            return None
        # a name too long for the file system, say
        raise ConfigError(f"not a usable {what} name or path ({err.strerror or err})", source=shown) from None


# Validated specs by (what built them, path, text): specs are frozen, so one object serves
# every caller until the file's text changes.
_SPECS: dict[tuple[Any, str, str], Any] = {}


def load_spec(path: Path, build: Callable[[dict[str, Any], str], S], tag: Any) -> S:
    """``build(document, source)`` for the file at ``path``, kept while its text is unchanged;
    ``tag`` names the builder (a spec class, or the hardware loader)."""
    text = read_text(path)
    key = (tag, str(path), text)
    spec = _SPECS.get(key)
    if spec is None:
        spec = build(_document(path, text), str(path))
        if len(_SPECS) >= _PARSED_MAX:
            _SPECS.pop(next(iter(_SPECS)))
        _SPECS[key] = spec
    return spec


def load(model: type[T], name_or_path: str, folder: str, what: str) -> T:
    path = resolve(name_or_path, folder, what)
    return load_spec(path, lambda document, source: validate(model, document, source), model)
