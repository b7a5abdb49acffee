"""The long hostile-input profile (issue 21): the property tests of ``tests/test_fuzz_inputs.py``
with every case count multiplied (default x46: about 100,000 cases), run in-process, the cases run
per format and every failure classified (internal error, hang, non-finite, other) and written to
``benchmarks/results/fuzz.json``.

    python benchmarks/bench_fuzz.py            # the long profile, ~100,000 cases
    python benchmarks/bench_fuzz.py --scale 5  # a shorter one

A failing property stops its own test (hypothesis then shrinks it), so a clean run reports zero
failures and the full count of cases.  Seeds are fixed: the same run finds the same cases.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


class Collect:
    """A pytest plugin that keeps the per-format case counts and the failures."""

    def __init__(self) -> None:
        self.cases: dict[str, int] = {}
        self.failures: list[dict[str, str]] = []

    def pytest_runtest_logreport(self, report) -> None:  # type: ignore[no-untyped-def]
        if report.failed:
            text = str(report.longrepr)
            kind = ("internal error" if "internal error" in text else "hang" if "Hang" in text
                    else "non-finite" if "non-finite" in text else "other")
            self.failures.append({"test": report.nodeid, "kind": kind, "detail": text[-2000:]})

    def pytest_sessionfinish(self, session, exitstatus) -> None:  # type: ignore[no-untyped-def]
        module = sys.modules.get("test_fuzz_inputs")
        self.cases = dict(getattr(module, "CASES", {}))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=46.0, help="multiplier of the CI case counts")
    args = parser.parse_args()
    os.environ["ACCELSIM_FUZZ_SCALE"] = str(args.scale)
    sys.path[:0] = [str(REPO), str(REPO / "tests")]
    import pytest
    collect = Collect()
    start = time.perf_counter()
    # A private basetemp: pytest prunes old numbered temp folders, and a concurrent pytest run
    # would otherwise delete this run's scratch files from under it.
    with tempfile.TemporaryDirectory(prefix="accelsim-bench-fuzz-") as base:
        code = pytest.main(["-q", "-p", "no:cacheprovider", "-p", "no:xdist", "-o", "addopts=",
                            "--basetemp", base, str(REPO / "tests" / "test_fuzz_inputs.py")],
                           plugins=[collect])
    wall = time.perf_counter() - start
    kinds = [f["kind"] for f in collect.failures]
    record = {
        "benchmark": "fuzz", "profile": "long" if args.scale >= 46 else f"scale {args.scale:g}",
        "date_utc": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M"),
        "scale": args.scale, "cases": collect.cases, "total_cases": sum(collect.cases.values()),
        "internal_errors": kinds.count("internal error"), "hangs": kinds.count("hang"),
        "non_finite": kinds.count("non-finite"), "other_failures": kinds.count("other"),
        "failures": collect.failures, "wall_s": round(wall, 1), "pytest_exit": int(code),
    }
    out = HERE / "results" / "fuzz.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    print(f"{record['total_cases']} cases in {wall:.0f} s: {record['internal_errors']} internal errors, "
          f"{record['hangs']} hangs, {record['non_finite']} non-finite, {record['other_failures']} other "
          f"-> {out}")
    return 0 if code == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
