"""Run design points on local processes or a Dask cluster, streaming rows to CSV as they land.

Each finished chunk's rows are appended as complete lines with one write, flush and fsync, so a sweep killed at any
moment loses at most the chunks in flight; ``resume`` reads the file, drops a torn last line,
and skips every point already there.  Rows are identified by ``point_id`` (a hash of the
point's parameters), and evaluation is deterministic, so a resumed sweep ends with exactly
the rows an uninterrupted one would have.
"""
from __future__ import annotations

import contextlib
import csv
import fcntl
import io
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from accelsim.dse.evaluate import Job
from accelsim.dse.fastpath import evaluate_points
from accelsim.dse.space import METRICS, point_id
from accelsim.errors import AccelsimError

# Points per task; small enough that a kill loses little, large enough to vectorise well.
CHUNK = int(os.environ.get("ACCELSIM_DSE_CHUNK", "256"))
LOCK_FILE = ".sweep.lock"


def columns(keys: list[str]) -> list[str]:
    return ["point_id", *keys, "status", "reason", *METRICS]


def read_rows(path: Path) -> list[dict[str, Any]]:
    """Rows of a results CSV with numbers parsed; a torn final line (a kill mid-write) is dropped."""
    if not path.is_file():
        return []
    text = path.read_text(encoding="utf-8")
    if text and not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
    rows = []
    for raw in csv.DictReader(io.StringIO(text)):
        rows.append({k: _parse(v, k) for k, v in raw.items()})
    return rows


# Columns that are always text: a hex point id such as "1234e56789012345" must not read as a number.
TEXT_COLUMNS = ("point_id", "status", "reason")


def _parse(text: str | None, column: str = "") -> Any:
    if text is None or text == "":
        return None
    if column in TEXT_COLUMNS:
        return text
    try:
        return float(text)
    except ValueError:
        return text


class CsvSink:
    """Appends rows to a CSV file, each as one write followed by flush and fsync."""

    def __init__(self, path: Path, fields: list[str], *, resume: bool):
        self.path, self.fields = path, fields
        path.parent.mkdir(parents=True, exist_ok=True)
        if resume and path.is_file():
            self._truncate_torn_tail()
            header = path.read_text(encoding="utf-8").split("\n", 1)[0]
            if header and header.split(",") != fields:
                raise AccelsimError(f"cannot resume: {path} has columns {header!r}, this sweep writes "
                                    f"{','.join(fields)!r}; use a new --out folder")
        else:
            path.write_text("", encoding="utf-8")
        self.handle = path.open("a", encoding="utf-8", newline="")
        if self.handle.tell() == 0:
            self._write_line(fields)

    def _truncate_torn_tail(self) -> None:
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            with self.path.open("r+b") as f:
                f.truncate(data.rfind(b"\n") + 1)

    def _write_line(self, values: list[Any]) -> None:
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerow(values)
        self.handle.write(buffer.getvalue())
        self.handle.flush()
        os.fsync(self.handle.fileno())

    def write(self, rows: list[dict[str, Any]]) -> None:
        """Append rows (one chunk) with a single write, flush and fsync: each row is a whole
        line, and a kill at worst tears the last line, which resuming drops."""
        buffer = io.StringIO()
        out = csv.writer(buffer, lineterminator="\n")
        for row in rows:
            out.writerow([_cell(row.get(f)) for f in self.fields])
        self.handle.write(buffer.getvalue())
        self.handle.flush()
        os.fsync(self.handle.fileno())

    def close(self) -> None:
        self.handle.close()


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)  # round-trips exactly
    return value


def _chunks(points: list[dict], size: int) -> Iterator[list[dict]]:
    for start in range(0, len(points), size):
        yield points[start:start + size]


def evaluate_chunk(job: Job, points: list[dict]) -> list[dict]:
    return evaluate_points(job, points)


# The job a pool worker received once at start-up: tasks then carry only their points, and the
# worker's lowered graph and validation caches (``fastpath``) last for all its chunks.
_WORKER_JOB: Job | None = None


# The descriptor of the sweep's folder lock in this process.  A forked worker closes its copy,
# so the lock is the sweep's alone and ends the moment the sweep does, dying workers or not.
_LOCK_FD: int | None = None


def _start_worker(job: Job, parent: int | None = None) -> None:
    global _WORKER_JOB
    _WORKER_JOB = job
    if _LOCK_FD is not None:
        with contextlib.suppress(OSError):
            os.close(_LOCK_FD)
    if parent is not None:
        die_with_parent(parent)


def die_with_parent(parent: int) -> None:
    """End this worker when the sweep that started it ends, however it ends (a SIGKILL runs no
    clean-up, and orphaned workers would hold results.csv and the CPUs for minutes): Linux's
    parent-death signal, and on every platform a thread that watches the parent's pid."""
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # it died before the signal was armed
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


@contextlib.contextmanager
def locked_folder(out: Path) -> Iterator[Path]:
    """Hold an exclusive lock on ``out`` for the life of a sweep: a second sweep on the same
    folder is refused in one line instead of writing every row twice.  The lock is the
    kernel's (flock), so a killed sweep never leaves a stale one."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        handle = (out / LOCK_FILE).open("a+", encoding="utf-8")
    except OSError as err:
        raise AccelsimError(f"--out: cannot write to {out} ({err.strerror or err})") from None
    with handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise AccelsimError(f"--out: another sweep ({holder}) is writing to {out}; wait for it to "
                                f"finish or choose another --out") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}")
        handle.flush()
        global _LOCK_FD
        _LOCK_FD = handle.fileno()
        try:
            yield out
        finally:
            _LOCK_FD = None
            handle.truncate(0)
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _worker_chunk(points: list[dict]) -> list[dict]:
    assert _WORKER_JOB is not None, "pool worker started without its job"
    return evaluate_points(_WORKER_JOB, points)


def pool_chunk(todo: int, workers: int, chunk: int) -> int:
    """Points per pool task: at least ``chunk``, and few enough tasks that each worker's fixed
    cost (its first lowering, task round trips) is spread over many points -- about four tasks
    per worker, so the last to finish does not leave the others idle for long."""
    return max(chunk, -(-todo // (4 * workers)))


def run(job: Job, points: list[dict[str, Any]], out_csv: Path, *, workers: int = 1,
        scheduler: str | None = None, resume: bool = False,
        progress: Callable[[int], None] | None = None, chunk: int = CHUNK) -> list[dict[str, Any]]:
    """Evaluate ``points`` (skipping those already in ``out_csv`` when resuming); return the rows
    of every point, in the order of ``points``."""
    fields = columns(job.space.keys)
    sink = CsvSink(out_csv, fields, resume=resume)
    done = {r["point_id"]: r for r in read_rows(out_csv)} if resume else {}
    todo, seen = [], set(done)
    for p in points:
        pid = point_id(p)
        if pid not in seen:
            seen.add(pid)
            todo.append(p)
    if progress:
        progress(len(points) - len(todo))
    try:
        for rows in _dispatch(job, todo, workers, scheduler, chunk):
            sink.write(rows)
            for row in rows:
                done[row["point_id"]] = _normalise(row, fields)
            if progress:
                progress(len(rows))
    finally:
        sink.close()
    return [done[point_id(p)] for p in points]


def _normalise(row: dict, fields: list[str]) -> dict:
    """A fresh row as it will read back from the CSV (numbers as floats, gaps as None)."""
    return {f: _parse(str(_cell(row.get(f))), f) if row.get(f) is not None else None for f in fields}


def _dispatch(job: Job, todo: list[dict], workers: int, scheduler: str | None,
              chunk: int) -> Iterator[list[dict]]:
    if not todo:
        return
    if scheduler:
        yield from _dask(job, list(_chunks(todo, chunk)), scheduler)
    elif workers <= 1:
        for c in _chunks(todo, chunk):
            yield evaluate_chunk(job, c)
    else:
        with ProcessPoolExecutor(max_workers=workers, initializer=_start_worker,
                                 initargs=(job, os.getpid())) as pool:
            futures = [pool.submit(_worker_chunk, c)
                       for c in _chunks(todo, pool_chunk(len(todo), workers, chunk))]
            for future in as_completed(futures):
                yield future.result()


def _dask(job: Job, chunks: list[list[dict]], scheduler: str) -> Iterator[list[dict]]:
    try:
        from dask.distributed import Client
        from dask.distributed import as_completed as dask_completed
    except ImportError:
        raise AccelsimError("--scheduler needs Dask: pip install 'accelsim[dask]'") from None
    try:
        client = scheduler if not isinstance(scheduler, str) else Client(scheduler, timeout="10s")
    except OSError as err:
        raise AccelsimError(f"cannot reach the Dask scheduler at {scheduler}: {err}") from None
    try:
        job_future = client.scatter(job, broadcast=True)
        futures = [client.submit(evaluate_chunk, job_future, c, pure=False) for c in chunks]
        for future in dask_completed(futures):
            yield future.result()
    finally:
        if isinstance(scheduler, str):
            client.close()
