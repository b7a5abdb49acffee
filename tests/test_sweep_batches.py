"""A finished sweep read in batches gives what the whole table gave: the front found a batch at a
time is the whole front (as a set and in file order), whole rows fetched by position from Parquet
row groups or CSV chunks are the table's rows, and the report drawn from the judged columns plus
fetched rows is byte for byte the report drawn from the whole table."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from accelsim.dse import pareto, reading, runner
from accelsim.dse.metrics import STATUS_OK
from accelsim.dse.space import Condition
from accelsim.report.sweep import SweepSummary, load_frame, report_columns, rows_at, write_report

SPACES = Path(__file__).resolve().parent.parent / "hw_configs" / "spaces"

# Few distinct values so ties and duplicate rows are common; NaN and inf on purpose.
VALUES = st.sampled_from([0.0, 1.0, 2.0, 3.0, -1.5, np.inf, -np.inf, np.nan])


@st.composite
def tables(draw):
    n = draw(st.integers(min_value=0, max_value=60))
    k = draw(st.integers(min_value=1, max_value=4))
    data = {f"m{j}": draw(st.lists(VALUES, min_size=n, max_size=n)) for j in range(k)}
    status = draw(st.lists(st.sampled_from([STATUS_OK, STATUS_OK, "does not fit"]), min_size=n, max_size=n))
    frame = pd.DataFrame({"status": status, **data})
    senses = {f"m{j}": draw(st.sampled_from(["min", "max"])) for j in range(k)}
    return frame, senses


def _whole_front(frame: pd.DataFrame, senses: dict[str, str], feasible: np.ndarray) -> np.ndarray:
    """The definition over the whole table: the front of every feasible row at once."""
    front = np.zeros(len(frame), dtype=bool)
    rows = np.flatnonzero(feasible)
    if len(rows):
        values = pareto.oriented([frame[m].to_numpy(dtype=float)[rows] for m in senses], list(senses.values()))
        front[rows[pareto.pareto_mask(values)]] = True
    return front


@settings(max_examples=150, deadline=None)
@given(tables(), st.integers(min_value=1, max_value=70), st.booleans())
def test_front_found_in_batches_is_the_whole_front(table, batch, constrained):
    frame, senses = table
    conditions = [Condition(metric="m0", op="<=", value=2.0)] if constrained else []
    found = reading.read(frame, senses, conditions, batch=batch)
    whole = reading.read(frame, senses, conditions, batch=max(len(frame), 1))
    assert np.array_equal(found.feasible, whole.feasible)
    assert np.array_equal(found.front, _whole_front(frame, senses, whole.feasible))
    assert reading.pick(found, "m0", senses["m0"]) == reading.pick(whole, "m0", senses["m0"])


def _results(path: Path, n: int, seed: int) -> pd.DataFrame:
    """A results table shaped like a sweep's (text ids, status, reason; numbers with gaps)."""
    rng = np.random.default_rng(seed)
    ok = rng.random(n) < 0.6
    frame = pd.DataFrame({
        "point_id": [f"{i:04d}e{seed}" for i in range(n)],
        "a": rng.integers(1, 4, n).astype(float),
        "status": np.where(ok, STATUS_OK, "does not fit"),
        "reason": np.where(ok, "", "too big, by far"),
        "tokens_per_s": np.where(ok, rng.choice([1.0, 2.0, np.inf], n), np.nan),
    })
    frame.to_csv(path, index=False)
    return frame


@settings(max_examples=25, deadline=None)
@given(st.integers(min_value=1, max_value=300), st.integers(min_value=1, max_value=130),
       st.lists(st.integers(min_value=0, max_value=10_000), max_size=12), st.integers(0, 3))
def test_rows_fetched_in_batches_are_the_tables_rows(tmp_path_factory, n, batch, picks, seed):
    folder = tmp_path_factory.mktemp("rows")
    csv_path = folder / "results.csv"
    _results(csv_path, n, seed)
    parquet = runner.to_parquet(csv_path)
    positions = np.array([p % n for p in picks], dtype=np.int64)
    for path in (csv_path, parquet):
        whole = load_frame(path)
        expected = whole.iloc[positions].set_axis(positions)
        got = rows_at(path, positions, batch_rows=batch)
        pd.testing.assert_frame_equal(got, expected, check_index_type=False)


def test_parquet_written_in_row_groups_holds_the_csv(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "ROW_GROUP", 7)
    csv_path = tmp_path / "results.csv"
    _results(csv_path, 50, 1)
    import pyarrow.parquet as pq
    parquet = runner.to_parquet(csv_path)
    assert pq.ParquetFile(parquet).metadata.num_row_groups > 1
    pd.testing.assert_frame_equal(load_frame(parquet), load_frame(csv_path))
    assert list(load_frame(parquet, ["tokens_per_s", "status"]).columns) == ["status", "tokens_per_s"]


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())
            if p.suffix in (".csv", ".md", ".html", ".json") and p.name != "results.csv"}


def test_cli_sweep_report_equals_the_whole_table_report(tmp_path, cli):
    """End to end: `accelsim sweep` (judged columns + rows from Parquet) and `accelsim report`
    (the same from the CSV) write the files the whole-table report writes."""
    out = tmp_path / "sweep"
    code, _, err = cli("sweep", "--space", str(SPACES / "hardwired.yaml"), "--out", str(out),
                       "--constraint", "power_w<=200")
    assert code == 0, err
    summary = SweepSummary.load(out / "sweep.json")
    whole = tmp_path / "whole"
    whole.mkdir()
    write_report(load_frame(out / "results.csv"), summary, whole)
    (whole / "sweep.json").write_bytes((out / "sweep.json").read_bytes())
    swept = _files(out)
    assert {"pareto.csv", "chosen.csv", "report.md"} <= set(swept)
    assert swept == _files(whole)
    assert len(report_columns(summary)) < len(load_frame(out / "results.csv").columns)
    redrawn = tmp_path / "redrawn"
    redrawn.mkdir()
    for name in ("results.csv", "sweep.json"):
        (redrawn / name).write_bytes((out / name).read_bytes())
    code, _, err = cli("report", str(redrawn))
    assert code == 0, err
    assert _files(redrawn) == swept


def test_report_on_results_missing_a_judged_column_is_one_line(tmp_path, cli):
    out = tmp_path / "sweep"
    code, _, err = cli("sweep", "--space", str(SPACES / "hardwired.yaml"), "--out", str(out), "--no-report")
    assert code == 0, err
    frame = load_frame(out / "results.csv")
    frame.drop(columns=["area_mm2"]).to_csv(out / "results.csv", index=False)
    code, _, err = cli("report", str(out))
    assert code == 2
    assert err.count("\n") == 1 and "results.csv" in err and "'area_mm2'" in err, err


def test_parquet_of_a_column_the_first_block_types_wrong_is_typed_from_the_whole_file(tmp_path):
    """Whole numbers for the first megabytes, then a fraction: the streamed conversion's first
    guess (integers) fails, and the file is typed whole instead, as pandas reads the CSV."""
    n = 120_000
    frame = pd.DataFrame({"point_id": [f"{i:016x}" for i in range(n)],
                          "a": [str(i % 7) for i in range(n - 1)] + ["2.5"],
                          "status": STATUS_OK, "reason": "", "tokens_per_s": 1.0})
    csv_path = tmp_path / "results.csv"
    frame.to_csv(csv_path, index=False)
    parquet = runner.to_parquet(csv_path)
    pd.testing.assert_frame_equal(load_frame(parquet), load_frame(csv_path))
    assert load_frame(parquet)["a"].iloc[-1] == 2.5
