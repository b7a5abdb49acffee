"""Live progress on long runs: a bar on the terminal's stderr, never in piped or --json output."""
from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

T = TypeVar("T")

# A bar appears only once a run has taken this long: short runs stay as quiet as before.
DELAY_S = 1.0


def on_terminal() -> bool:
    """Whether a person is watching stderr (a pipe, a file or a test's capture is not one)."""
    stream = sys.stderr
    return bool(getattr(stream, "isatty", None) and stream.isatty())


def progress(items: Iterable[T], unit: str, *, quiet: bool = False, total: int | None = None,
             description: str | None = None) -> Iterator[T]:
    """``items``, with a tqdm bar on stderr after the first second when a terminal watches and
    the output is not for a machine (``quiet``: --json, --csv)."""
    if quiet or not on_terminal():
        yield from items
        return
    from tqdm import tqdm  # only on a terminal: keeps the import off the quiet path
    yield from tqdm(items, unit=f" {unit}", total=total, desc=description, delay=DELAY_S,
                    file=sys.stderr, leave=False, dynamic_ncols=True)


@contextmanager
def bar(total: int | None, unit: str, *, quiet: bool = False, description: str | None = None
        ) -> Iterator[Callable[[], None]]:
    """A counter to call once per finished item (work a library drives, e.g. a study's cells);
    shown like ``progress``: on a terminal, after the first second, never for --json."""
    if quiet or not on_terminal():
        yield lambda: None
        return
    from tqdm import tqdm
    with tqdm(total=total, unit=f" {unit}", desc=description, delay=DELAY_S, file=sys.stderr,
              leave=False, dynamic_ncols=True) as shown:
        yield lambda: shown.update(1) and None
