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
    """``read_rows`` before this pass: the reader, cell by cell (over the same text)."""
    reader = csv.reader(io.StringIO(runner.results_text(path, start)))
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


# -- whole-spec peak checks over design points (``Backend.check_columns``)

_FACTOR = st.sampled_from([0.5, 0.96, 0.97, 0.9699999999, 0.9700000001, 1.0, 1.03, 1.0299999999,
                           1.0300000001, 1.2])


def _passes(spec: Any, update: dict[str, Any]) -> bool:
    from pydantic import ValidationError
    try:
        type(spec).model_validate({**dict(spec), **update})
        return True
    except ValidationError:
        return False


def _masks(kind: Any, spec: Any, sections: dict[str, list[Any]]) -> dict[str, Any]:
    import numpy as np

    from accelsim.dse.columns import spec_columns
    n = len(next(iter(sections.values())))
    view = spec_columns(spec, {name: (values, np.arange(n)) for name, values in sections.items()}, n)
    return {k: np.broadcast_to(np.asarray(v, dtype=bool), (n,)) for k, v in kind.check_columns(view).items()}


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([1, 1024, 3 * 2**20, 2**33 + 1]), st.sampled_from([1e6, 0.9e9, 1.7e9]),
                          _FACTOR), min_size=1, max_size=12))
def test_hardwired_peak_check_over_points_equals_each_point(points: list[tuple[int, float, float]]) -> None:
    """True exactly where the validator passes the point (finite peaks), stated peaks at and
    around the 3 % bounds."""
    from accelsim.hardware import load_hardware
    from accelsim.hardware.hardwired import BACKEND
    spec = load_hardware("hardwired-llama-3.1-8b")
    dtype = spec.hardwired.weight_dtype
    hardwired = [spec.hardwired.model_copy(update={"macs": m}) for m, _, _ in points]
    compute = [spec.compute.model_copy(update={"clock": c, "matrix": {**spec.compute.matrix, dtype: 2.0 * m * c * f}})
               for m, c, f in points]
    mask = _masks(BACKEND, spec, {"hardwired": hardwired, "compute": compute})["_peak_matches_macs"]
    expected = [_passes(spec, {"hardwired": h, "compute": c}) for h, c in zip(hardwired, compute)]
    assert mask.tolist() == expected


@settings(max_examples=60, deadline=None)
@given(points=st.lists(st.tuples(st.sampled_from([64, 128, 256]), st.sampled_from([64, 96, 256]),
                                 st.sampled_from([1, 3, 8]), _FACTOR, _FACTOR), min_size=1, max_size=12),
       nan=st.booleans())
def test_systolic_peak_check_over_points_equals_each_point(points: list[tuple[int, int, int, float, float]],
                                                           nan: bool) -> None:
    """Each stated dtype's peak against the array's, both bounds; a NaN peak (which the validator
    lets pass) is left to the point's own check: False in the mask, never a wrong True."""
    from accelsim.hardware import load_hardware
    from accelsim.hardware.systolic import BACKEND
    spec = load_hardware("tpu-v5e")
    s, clock = spec.systolic, spec.compute.clock
    systolic = [s.model_copy(update={"rows": r, "cols": c, "arrays": a}) for r, c, a, _, _ in points]
    compute = []
    for k, (r, c, a, f1, f2) in enumerate(points):
        matrix = dict(spec.compute.matrix)
        for dtype, f in zip(sorted(s.macs_per_pe), (f1, f2)):
            if dtype in matrix:
                matrix[dtype] = 2.0 * a * r * c * s.macs_per_pe[dtype] * clock * f
        if nan and k == 0:
            matrix[min(matrix)] = float("nan")
        compute.append(spec.compute.model_copy(update={"matrix": matrix}))
    mask = _masks(BACKEND, spec, {"systolic": systolic, "compute": compute})["_peak_matches_array"]
    expected = [_passes(spec, {"systolic": x, "compute": c}) for x, c in zip(systolic, compute)]
    if nan:
        assert not mask[0]
        mask, expected = mask[1:], expected[1:]
    assert mask.tolist() == expected


def test_points_refused_by_the_peak_check_read_as_one_by_one(write, monkeypatch) -> None:
    """A space whose stated peak is fixed while MACs and clock vary: most points fail the check.
    Those checked column-wise pass without a per-point check, the others are refused with the
    line the scalar path gives -- every row equal to ``simulate``'s."""
    import math

    from accelsim.dse import fastpath, search
    from accelsim.dse.evaluate import Job, evaluate_points_scalar
    from accelsim.dse.space import METRICS, load_space
    from accelsim.hardware import hardwired
    from accelsim.model.spec import load_model
    from accelsim.workload import Workload
    space = load_space(write("space.yaml", """
name: peaks
base: hardwired-llama-3.1-8b
workload: {phase: decode, batch: 1, context: 2048}
parameters:
  - key: hardwired.macs
    values: [1048576, 1081344, 2097152, 4194304]
  - key: compute.clock
    values: [1 GHz, 1.01 GHz, 1.2 GHz]
  - key: memory.sram.capacity
    linear: {start: 64 MiB, stop: 512 MiB, num: 9}
objectives: {area_mm2: min}
"""))
    job = Job(space, load_model("llama-3.1-8b"), Workload(**space.spec.workload.model_dump()))
    masks: list[Any] = []
    column_wise = hardwired.HardwiredBackend.check_columns
    monkeypatch.setattr(hardwired.HardwiredBackend, "check_columns",
                        lambda self, hw: masks.append(column_wise(self, hw)) or masks[-1])
    for points in (search.random_points(space, 60, 3), list(search.iter_grid_points(space))):
        table = fastpath.evaluate(job, points)
        fast, slow = table.records(), evaluate_points_scalar(job, points)
        reasons = {r["reason"] for r in slow if r["status"] != "ok"}
        assert any("disagrees with 2 x hardwired.macs x clock" in (r or "") for r in reasons)
        assert {r["status"] for r in slow} >= {"ok"}
        for f, s in zip(fast, slow):
            assert (f["point_id"], f["status"], f["reason"]) == (s["point_id"], s["status"], s["reason"])
            if s["status"] == "ok":
                for m in METRICS:
                    assert (f[m] is None) == (s[m] is None), m
                    assert s[m] is None or math.isclose(f[m], s[m], rel_tol=1e-9), (m, f[m], s[m])
    assert masks and any(m["_peak_matches_macs"].any() for m in masks)
    assert any(not m["_peak_matches_macs"].all() for m in masks)
