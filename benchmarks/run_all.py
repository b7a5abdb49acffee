"""Run every benchmark in this folder, one after another; each writes benchmarks/results/<name>.json.

    python benchmarks/run_all.py            # all of them
    python benchmarks/run_all.py dse op     # some of them
    python benchmarks/run_all.py conservation  # issue 14's conservation laws, full matrix (exits 1 on a violation)

Benchmarks report ratios against a baseline measured in the same run (the machines are shared
and noisy), never absolute targets checked in tests; docs/performance.md records the results.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHMARKS = {path.stem.removeprefix("bench_"): path for path in sorted(HERE.glob("bench_*.py"))}


def main(names: list[str]) -> int:
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        print(f"error: unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}",
              file=sys.stderr)
        return 2
    failed = []
    for name in names or list(BENCHMARKS):
        print(f"== {name}", flush=True)
        if subprocess.run([sys.executable, str(BENCHMARKS[name])], check=False).returncode:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
