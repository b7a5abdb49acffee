"""Issue 20, seventh pass on NSGA-II: each replacement checked against the code it replaces.

The results file is read back once per generation (``runner.read_rows``, the rows this
generation appended) and its ids once more on the next resume (``runner.done_ids``); both now
split the CSV text directly where it holds no quote, carriage return or NUL, and parse a column
of numbers at once.  The old forms are kept here as the oracles, and the texts drawn from a small
alphabet so quotes, blank lines, short and long lines, lone carriage returns, empty cells and
numeric-looking text all turn up."""
from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accelsim.dse import runner

_TEXT = st.lists(st.sampled_from(list('a1.5e-,"\n\r\x00 ') + ["inf", "nan", "1e+300", "ok"]), max_size=40).map("".join)


def _reader_records(text: str, newline: str) -> Any:
    try:
        return list(csv.reader(io.StringIO(text, newline=newline)))
    except csv.Error as err:
        return ("refused", str(err))


def _records(text: str, newline: str) -> Any:
    try:
        return runner.csv_records(text, newline)
    except csv.Error as err:
        return ("refused", str(err))


@settings(max_examples=600, deadline=None)
@given(text=_TEXT, newline=st.sampled_from(["\n", ""]))
def test_records_equal_the_csv_reader(text: str, newline: str) -> None:
    assert _records(text, newline) == _reader_records(text, newline)


def test_records_refused_past_the_field_size_limit_as_the_reader_refuses() -> None:
    old = csv.field_size_limit(8)
    try:
        for text in ("a,b\n" + "x" * 9 + "\n", "a,b\n" + "x" * 8 + "\n", "a\n" + "y" * 7 + ",z\n"):
            assert _records(text, "\n") == _reader_records(text, "\n")
        assert _records("a\n" + "x" * 9 + "\n", "\n")[0] == "refused"
    finally:
        csv.field_size_limit(old)


def _old_read_rows(path: Path, start: int = 0) -> list[dict[str, Any]]:
    """``read_rows`` before this pass: the reader, cell by cell."""
    if start:
        with path.open("rb") as handle:
            header = handle.readline()
            handle.seek(max(start, len(header)))
            text = (header + handle.read()).decode("utf-8")
    else:
        text = path.read_text(encoding="utf-8")
    if text and not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
    reader = csv.reader(io.StringIO(text))
    names = next(reader, None)
    if names is None:
        return []
    text_columns = [k in runner.TEXT_COLUMNS for k in names]
    rows = []
    for raw in reader:
        if not raw:
            continue
        if len(raw) < len(names):
            raw = raw + [""] * (len(names) - len(raw))
        rows.append({k: (v if is_text else runner._number(v)) if v else None
                     for k, v, is_text in zip(names, raw, text_columns)})
    return rows


def _read(reader: Any, *args: Any) -> str:
    """The rows' repr (NaN equal to itself), or the reader's refusal."""
    try:
        return repr(reader(*args))
    except csv.Error as err:
        return f"refused: {err}"


_CELL = st.sampled_from(["", "1.5", "-0.0", "1e+300", "inf", "nan", "abc", "1234e56789012345", "True",
                         "ok", '"a,b"', '"x\ny"', "a\rb", " 2", "1_0", "0x1"])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(header=st.sampled_from(["point_id,a,status,b,reason", "", "a", "point_id,x,y"]),
       lines=st.lists(st.lists(_CELL, min_size=0, max_size=7), max_size=9),
       torn=st.booleans())
def test_read_rows_equal_the_cell_by_cell_reader(tmp_path, header: str, lines: list[list[str]], torn: bool) -> None:
    text = header + "\n" + "".join(",".join(line) + "\n" for line in lines) + ("d,1.5" if torn else "")
    path = tmp_path / "r.csv"
    path.write_bytes(text.encode("utf-8"))
    assert _read(runner.read_rows, path) == _read(_old_read_rows, path)
    # from a line start, as NSGA-II reads a generation's rows: under the file's header
    data = text.encode("utf-8")
    start = data.find(b"\n", data.find(b"\n") + 1) + 1
    if start:
        assert _read(runner.read_rows, path, start) == _read(_old_read_rows, path, start)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(parts=st.lists(st.lists(st.lists(_CELL, min_size=0, max_size=4), max_size=5), min_size=1, max_size=4))
def test_done_ids_equal_the_reader_across_appends(tmp_path, parts: list[list[list[str]]]) -> None:
    """Ids read in pieces as a file grows (each resume reads what was appended) equal the
    reader's first cells of the whole file, header left out."""
    path = tmp_path / f"r{abs(hash(repr(parts)))}.csv"
    text = "point_id,a\n"
    path.write_text(text, encoding="utf-8", newline="")
    for part in parts:
        text += "".join(",".join(line) + "\n" for line in part)
        path.write_text(text, encoding="utf-8", newline="")
        whole = text[: text.rfind("\n") + 1]
        reader = csv.reader(io.StringIO(whole, newline=""))
        try:
            next(reader, None)
            expected: Any = {line[0] for line in reader if line}
        except csv.Error:
            with pytest.raises(csv.Error):
                runner.done_ids(path)
            return
        assert runner.done_ids(path) == expected
