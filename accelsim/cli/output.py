"""Where reports go: ``--name`` is a name, ``--out`` is any folder the user can write, and a report
appears whole or not at all.

A report is written into a hidden temporary folder beside its target and renamed into place when
complete, so a crash or a kill never leaves half a report, and a reader never sees one.  An existing
non-empty folder is replaced only with ``--force``; otherwise the report goes beside it
(``NAME-2``, ``NAME-3``, ...) and one line says so.
"""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import click

from accelsim.errors import AccelsimError

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")
MAX_BESIDE = 1000


def check_name(text: str, what: str = "--name") -> str:
    """A report name: letters, digits and ``._+-``, no path separators, not '.' or '..'."""
    if not _NAME.match(text) or text in (".", ".."):
        raise AccelsimError(f"must be a name of letters, digits and . _ + - (at most 128, no path "
                            f"separators; use --out for a folder elsewhere), got {text[:80]!r}",
                            source=what)
    return text


def name_option(default: str) -> Callable:
    def validate(ctx: click.Context, param: click.Parameter, value: str) -> str:
        try:
            return check_name(value)
        except AccelsimError as err:
            raise click.BadParameter(err.message) from None
    return click.option("--name", default=default, show_default=True, callback=validate,
                        help="Report name (a folder under reports/; no path separators).")


force_option = click.option("--force", is_flag=True,
                            help="Replace an existing report folder (otherwise the report is written "
                                 "beside it, as NAME-2, NAME-3, ...).")


def _occupied(path: Path) -> bool:
    return path.exists() and (not path.is_dir() or any(path.iterdir()))


def _target(out: Path, force: bool) -> Path:
    if force or not _occupied(out):
        return out
    for n in range(2, MAX_BESIDE + 2):
        beside = out.with_name(f"{out.name}-{n}")
        if not _occupied(beside):
            click.echo(f"note: {out} exists; writing the report to {beside} instead (--force "
                       f"replaces it)", err=True)
            return beside
    raise AccelsimError(f"{out} and {MAX_BESIDE} folders beside it exist; use --force or another --out")


@contextlib.contextmanager
def report_folder(out: Path, force: bool, option: str = "--out") -> Iterator[tuple[Path, Path]]:
    """Yield (a temporary folder to write into, the folder the report will end in).  On success
    the temporary folder is renamed to the target (an old one removed after, under --force)."""
    target = _target(out, force)
    if target.exists() and not target.is_dir():
        raise AccelsimError(f"{option}: {target} is a file, not a folder")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
        staging.chmod(0o777 & ~_umask())  # mkdtemp makes it private; a report folder is not
    except OSError as err:
        raise AccelsimError(f"{option}: cannot write to {target} ({err.strerror or err})") from None
    try:
        yield staging, target
        _swap(staging, target, option)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


@contextlib.contextmanager
def files_into(folder: Path, option: str = "--out") -> Iterator[Path]:
    """Yield a temporary folder inside ``folder`` to write a report into; on success each file
    written there is renamed into ``folder`` (for a folder that holds more than the report, such
    as a sweep's results), so a reader never sees half a file."""
    try:
        staging = Path(tempfile.mkdtemp(prefix=".report.tmp-", dir=folder))
    except OSError as err:
        raise AccelsimError(f"{option}: cannot write to {folder} ({err.strerror or err})") from None
    try:
        yield staging
        for path in sorted(staging.rglob("*"), key=lambda q: len(q.parts)):
            destination = folder / path.relative_to(staging)
            if path.is_dir():
                destination.mkdir(exist_ok=True)
            else:
                os.replace(path, destination)
    except OSError as err:
        raise AccelsimError(f"{option}: cannot write to {folder} ({err.strerror or err})") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _swap(staging: Path, target: Path, option: str) -> None:
    old = None
    try:
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
            os.replace(target, old / "report")
        os.replace(staging, target)
    except OSError as err:
        raise AccelsimError(f"{option}: cannot write to {target} ({err.strerror or err})") from None
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def moved(files: dict[str, Path], staging: Path, target: Path) -> dict[str, Path]:
    """The paths a writer returned inside ``staging``, as they are once renamed to ``target``."""
    return {k: target / Path(v).relative_to(staging) for k, v in files.items()}
