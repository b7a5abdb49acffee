"""Run design points on local processes or a Dask cluster, streaming rows to CSV as they land.

Points are read lazily and evaluated a chunk at a time by the vectorised fast path; each chunk
goes to the file as columns (no per-row dicts), so memory stays flat however long the sweep.
``stream`` is the sweep's path (it returns only counts); ``run`` also returns every row as a
dict, for callers that want them (NSGA-II's generations, tests).  ``to_parquet`` writes the
finished CSV's Parquet twin, with typed columns, for fast reading back.

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
import itertools
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any

from accelsim.dse import fastpath
from accelsim.dse.evaluate import Job
from accelsim.dse.space import METRICS
from accelsim.errors import AccelsimError

# Points per task: large enough that the fast path's per-chunk work (placing and costing each
# layout) is spread thin, small enough that a kill loses about a second of work.
CHUNK = int(os.environ.get("ACCELSIM_DSE_CHUNK", "4096"))
LOCK_FILE = ".sweep.lock"


def columns(keys: list[str]) -> list[str]:
    return ["point_id", *keys, "status", "reason", *METRICS]


def results_text(path: Path, start: int = 0) -> str:
    """A results CSV's text from byte ``start`` on (under its header), up to its last whole line
    (a torn final line, a kill mid-write, is dropped)."""
    if start:
        with path.open("rb") as handle:
            header = handle.readline()
            handle.seek(max(start, len(header)))
            text = (header + handle.read()).decode("utf-8")
    else:
        text = path.read_text(encoding="utf-8")
    if text and not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
    return text


def read_rows(path: Path, start: int = 0) -> list[dict[str, Any]]:
    """Rows of a results CSV with numbers parsed; a torn final line (a kill mid-write) is dropped.
    ``start`` (a byte offset at a line start, from ``resumed_at``) reads only the rows from there
    on, under the file's header."""
    if not path.is_file():
        return []
    records = csv_records(results_text(path, start))
    if not records:
        return []
    names, raws = records[0], [raw for raw in records[1:] if raw]  # blank lines skipped (as ``csv.DictReader``)
    if not names:  # a blank first line: no columns, an empty row per record (as before)
        return [{} for _ in raws]
    width = len(names)
    # a short line (torn): the missing cells empty, as ``csv.DictReader`` leaves them
    raws = [raw if len(raw) >= width else raw + [""] * (width - len(raw)) for raw in raws]
    # ``_parse`` per cell, a column at a time: a column whose every cell is a number is read
    # by one ``map(float, ...)``; any other (an empty cell, a text) cell by cell as before
    cells: list[list[Any]] = []
    for name, column in zip(names, zip(*raws)):
        if name in TEXT_COLUMNS:
            cells.append([v if v else None for v in column])
            continue
        try:
            cells.append(list(map(float, column)))
        except ValueError:
            cells.append([_number(v) if v else None for v in column])
    return [dict(zip(names, row)) for row in zip(*cells)]


def csv_records(text: str, newline: str = "\n") -> list[list[str]]:
    """The records ``csv.reader`` reads from ``text`` (as ``list(csv.reader(io.StringIO(text,
    newline=newline)))``; the two callers split lines differently where a carriage return is
    met, and keep doing so).
    Text with no quote, carriage return or NUL holds no quoted cell and ends a record at each
    newline only, so it is split on newlines and commas directly (a blank line is an empty
    record, as the reader gives it); anything else, or a line past the reader's field size
    limit (where it refuses), goes through the reader."""
    if '"' not in text and "\r" not in text and "\x00" not in text:
        lines = text.split("\n")
        if lines[-1] == "":
            lines.pop()  # the newline ending the last record
        if not lines or max(map(len, lines)) < csv.field_size_limit():
            return [line.split(",") if line else [] for line in lines]
    return list(csv.reader(io.StringIO(text, newline=newline)))


def first_cells(text: str, newline: str = "\n") -> list[str | None]:
    """The first cell of each record ``csv_records`` reads from ``text``, None for a blank
    record (the ids of a results CSV, read at every resume): where ``csv_records`` splits the
    text directly, each line's text up to its first comma, without cutting the rest into cells."""
    if '"' not in text and "\r" not in text and "\x00" not in text:
        lines = text.split("\n")
        if lines[-1] == "":
            lines.pop()
        if not lines or max(map(len, lines)) < csv.field_size_limit():
            return [line.partition(",")[0] if line else None for line in lines]
    return [record[0] if record else None for record in csv_records(text, newline)]


def _number(text: str) -> Any:
    try:
        return float(text)
    except ValueError:
        return text


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
            with path.open(encoding="utf-8") as handle:  # the header alone (NSGA-II resumes every generation)
                header = handle.readline().rstrip("\n")
            if header and header.split(",") != fields:
                raise AccelsimError(f"cannot resume: {path} has columns {header!r}, this sweep writes "
                                    f"{','.join(fields)!r}; use a new --out folder")
        else:
            path.write_text("", encoding="utf-8")
        self.handle = path.open("a", encoding="utf-8", newline="")
        if self.handle.tell() == 0:
            self._write_line(fields)

    def _truncate_torn_tail(self) -> None:
        with self.path.open("rb") as f:  # the last byte tells; the whole file only when torn
            f.seek(0, os.SEEK_END)
            if not f.tell():
                return
            f.seek(-1, os.SEEK_END)
            if f.read(1) == b"\n":
                return
        data = self.path.read_bytes()
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
        self.write_text(buffer.getvalue())

    def write_text(self, text: str) -> None:
        """Append whole CSV lines with one write, flush and fsync."""
        self.handle.write(text)
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


def _chunks(points: Iterable[dict], size: int) -> Iterator[list[dict]]:
    iterator = iter(points)
    while True:
        with fastpath.gc_paused():  # drawing random points allocates a dict per point
            chunk = list(itertools.islice(iterator, size))
        if not chunk:
            return
        yield chunk


def chunk_text(job: Job, points: list[dict], ids: list[str] | None = None) -> str:
    """A chunk's rows as CSV lines (the columns of ``columns``), written column by column from
    the fast path's table: the same text the row-by-row writer produces for ``evaluate_points``.
    ``ids``: the points' ``fastpath.ids``, where the caller has them already."""
    fields = columns(job.space.keys)
    with fastpath.gc_paused():
        table = fastpath.evaluate(job, points, ids=ids)
        cells = table.cells(fields)
        if cells is not None:
            return csv_lines(cells)
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        for row in table.records():  # points with different key lists: row by row
            writer.writerow([_cell(row.get(f)) for f in fields])
    return buffer.getvalue()


# What makes ``csv.writer`` (its default dialect, lines ended by "\n") quote a field: the
# delimiter, the quote character or a character of the line terminator.
_QUOTED = (",", '"', "\n")


def csv_lines(columns: list[list[Any]]) -> str:
    """``csv.writer(lineterminator="\n").writerows(zip(*columns))``'s text, made column by
    column: a column with no character that needs quoting (the numbers, ids and most values)
    is joined as it is, and only the others are quoted cell by cell, as the writer quotes them
    (a cell that is not text is written as the writer writes it: ``_cell``, then ``str``)."""
    if len(columns) < 2 or not columns[0]:  # a lone empty field is written '""': the writer's rule
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerows(zip(*columns))
        return buffer.getvalue()
    texts = []
    for column in columns:
        if set(map(type, column)) != {str}:
            column = [c if type(c) is str else str(_cell(c)) for c in column]  # as the writer writes it
        joined = "".join(column)
        if any(mark in joined for mark in _QUOTED):
            column = [f'"{c.replace(chr(34), chr(34) * 2)}"' if any(m in c for m in _QUOTED) else c
                      for c in column]
        texts.append(column)
    return "\n".join(map(",".join, zip(*texts))) + "\n"


def evaluate_chunk(job: Job, points: list[dict]) -> str:
    return chunk_text(job, points)


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


def _worker_chunk(points: list[dict]) -> str:
    assert _WORKER_JOB is not None, "pool worker started without its job"
    return chunk_text(_WORKER_JOB, points)


# Largest pool task: with a few tasks in flight per worker, this bounds the points held in memory.
POOL_CHUNK_MAX = 32_768


def pool_chunk(todo: int, workers: int, chunk: int) -> int:
    """Points per pool task: at least ``chunk``, and few enough tasks that each worker's fixed
    cost (its first lowering, task round trips) is spread over many points -- about four tasks
    per worker, so the last to finish does not leave the others idle for long."""
    return max(chunk, min(-(-todo // (4 * workers)), POOL_CHUNK_MAX))


# Ids already read from a results file, by path: (inode, bytes read, the 64 bytes before that
# point, ids).  An evolutionary search resumes its own file once per generation; reading only
# what was appended since keeps that linear in the run.  A file rewritten or replaced (another
# inode, shorter, or other bytes where the last read ended) is read again whole.
_DONE: dict[str, tuple[int, int, bytes, frozenset[str]]] = {}


def done_ids(path: Path) -> set[str]:
    """Point ids already in a results CSV (a torn last line is not counted)."""
    if not path.is_file():
        return set()
    key = str(path.resolve())
    with path.open("rb") as handle:
        inode = os.fstat(handle.fileno()).st_ino
        known = _DONE.get(key)
        start, ids = 0, frozenset[str]()
        if known is not None and known[0] == inode:
            handle.seek(max(0, known[1] - 64))
            if handle.read(min(64, known[1])) == known[2]:
                start, ids = known[1], known[3]
        handle.seek(start)
        data = handle.read()
    end = start + data.rfind(b"\n") + 1
    firsts = first_cells(data[: end - start].decode("utf-8"), newline="")
    found = ids | {cell for cell in firsts[1 if start == 0 else 0:] if cell is not None}  # past the header
    if end > 0:
        with path.open("rb") as handle:
            handle.seek(max(0, end - 64))
            _DONE[key] = (inode, end, handle.read(min(64, end)), found)
    return set(found)


def stream(job: Job, points: Iterable[dict[str, Any]], out_csv: Path, *, workers: int = 1,
           scheduler: str | None = None, resume: bool = False, distinct: bool = False,
           total: int | None = None, progress: Callable[[int], None] | None = None,
           chunk: int = CHUNK, ids: list[str] | None = None) -> int:
    """Evaluate ``points`` (read lazily; skipping those already in ``out_csv`` when resuming, and
    repeats unless the caller says they are ``distinct``) into ``out_csv``; return how many
    rows were written.  Memory does not grow with the number of points, except for the set of
    ids kept to skip repeats and resumed points.  ``ids``: the points' ``fastpath.ids``, where
    the caller has them already (``run``), in the order of ``points``."""
    given = iter(ids) if ids is not None else None
    sink = CsvSink(out_csv, columns(job.space.keys), resume=resume)
    seen = done_ids(out_csv) if resume else set()
    check = resume or not distinct

    def todo() -> Iterator[tuple[list[dict], list[str] | None]]:
        for c in _chunks(points, chunk):
            ids = None
            if check:
                fresh, ids = [], []
                chunk_ids = list(itertools.islice(given, len(c))) if given is not None else fastpath.ids(c)
                for p, pid in zip(c, chunk_ids):
                    if pid not in seen:
                        seen.add(pid)
                        fresh.append(p)
                        ids.append(pid)
                if progress and len(fresh) < len(c):
                    progress(len(c) - len(fresh))
                c = fresh
            if c:
                yield c, ids

    written = 0
    try:
        for text, count in _dispatch(job, todo(), workers, scheduler, chunk, total):
            sink.write_text(text)
            written += count
            if progress:
                progress(count)
    finally:
        sink.close()
    return written


def run(job: Job, points: list[dict[str, Any]], out_csv: Path, *, workers: int = 1,
        scheduler: str | None = None, resume: bool = False,
        progress: Callable[[int], None] | None = None, chunk: int = CHUNK) -> list[dict[str, Any]]:
    """Evaluate ``points`` (skipping those already in ``out_csv`` when resuming); return the rows
    of every point, in the order of ``points``, as they read back from the CSV."""
    ids = fastpath.ids(points)
    stream(job, points, out_csv, workers=workers, scheduler=scheduler, resume=resume,
           total=len(points), progress=progress, chunk=chunk, ids=ids)
    # The rows this call wrote are past where its resume read ended: an evolutionary search
    # calls this once per generation, and reading the whole file back each time grows with the
    # square of the run.
    start = resumed_at(out_csv) if resume else 0
    done = {r["point_id"]: r for r in read_rows(out_csv, start)}
    if any(pid not in done for pid in ids):  # some were there before (a resumed sweep)
        done = {r["point_id"]: r for r in read_rows(out_csv)}
    return [done[pid] for pid in ids]


def resumed_at(path: Path) -> int:
    """Byte offset where the rows appended after the last ``done_ids`` of ``path`` begin (the
    end of the complete lines it read; 0 when it has not read this file)."""
    known = _DONE.get(str(path.resolve()))
    return known[1] if known is not None else 0


def _dispatch(job: Job, todo: Iterator[tuple[list[dict], list[str] | None]], workers: int,
              scheduler: str | None, chunk: int, total: int | None) -> Iterator[tuple[str, int]]:
    """(CSV text, rows) per finished chunk (``todo``: chunks of points with their ids where
    known).  Pool tasks are submitted a few at a time, so points not yet running are never all
    in memory."""
    if scheduler:
        yield from _dask(job, (c for c, _ in todo), scheduler)
    elif workers <= 1:
        for c, ids in todo:
            yield chunk_text(job, c, ids), len(c)
    else:
        size = pool_chunk(total, workers, chunk) if total else chunk
        pending: dict[Any, int] = {}
        with ProcessPoolExecutor(max_workers=workers, initializer=_start_worker,
                                 initargs=(job, os.getpid())) as pool:
            for c in _chunks(itertools.chain.from_iterable(c for c, _ in todo), size):
                if len(pending) >= 2 * workers:
                    finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for future in finished:
                        yield future.result(), pending.pop(future)
                pending[pool.submit(_worker_chunk, c)] = len(c)
            while pending:
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    yield future.result(), pending.pop(future)


def _dask(job: Job, chunks: Iterable[list[dict]], scheduler: str) -> Iterator[tuple[str, int]]:
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
        futures = {}
        for c in chunks:
            futures[client.submit(evaluate_chunk, job_future, c, pure=False)] = len(c)
        for future in dask_completed(list(futures)):
            yield future.result(), futures[future]
    finally:
        if isinstance(scheduler, str):
            client.close()


def to_parquet(csv_path: Path) -> Path:
    """Write ``results.parquet`` beside a finished results CSV (same rows and columns; ids,
    status and reason typed as text, so a hex id such as "1234e56789012345" stays text; an
    empty cell is a gap, as pandas reads the CSV) and
    return its path.  Read with ``report.sweep.load_frame``.

    The CSV is converted a block at a time into row groups of ``ROW_GROUP`` rows, so neither
    this nor a reader that takes the file a row group at a time holds the whole sweep."""
    import pyarrow as pa  # only sweeps need it: kept off the CLI's start-up path
    import pyarrow.csv as pacsv

    target = csv_path.with_suffix(".parquet")
    convert = pacsv.ConvertOptions(
        column_types={**{name: pa.string() for name in TEXT_COLUMNS},
                      # a metric with no value in every row (no breakeven) is still a number
                      **{name: pa.float64() for name in METRICS}},
        strings_can_be_null=True)
    temporary = target.with_suffix(".parquet.tmp")
    try:
        _csv_to_parquet_streamed(csv_path, temporary, convert)
    except pa.ArrowInvalid:
        # A parameter column whose type the first block guessed wrong (whole numbers first,
        # fractions later): typed from the whole file instead, as before streaming.
        _csv_to_parquet_whole(csv_path, temporary, convert)
    os.replace(temporary, target)  # a reader never sees half a file
    return target


# Rows per Parquet row group: a reader in batches holds about this many rows at a time.
ROW_GROUP = 65_536


def _csv_to_parquet_streamed(csv_path: Path, target: Path, convert) -> None:
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    reader = pacsv.open_csv(csv_path, convert_options=convert)
    with pq.ParquetWriter(target, reader.schema) as writer:
        pending: list = []
        rows = 0
        for batch in reader:
            pending.append(batch)
            rows += batch.num_rows
            if rows >= ROW_GROUP:
                writer.write_table(pa.Table.from_batches(pending), row_group_size=ROW_GROUP)
                pending, rows = [], 0
        if pending:
            writer.write_table(pa.Table.from_batches(pending), row_group_size=ROW_GROUP)


def _csv_to_parquet_whole(csv_path: Path, target: Path, convert) -> None:
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    pq.write_table(pacsv.read_csv(csv_path, convert_options=convert), target, row_group_size=ROW_GROUP)
