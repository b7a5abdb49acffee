"""Design points per second: the vectorised fast path against one-by-one evaluation through
``accelsim.api.simulate``, measured in the same run on the same spaces (Llama-3.1-8B decode).

    python benchmarks/bench_dse.py [--space FILE ...] [--slow-points 20] [--workers 2]
                                   [--large 20000] [--repeats 5]

Per space: the fast path on the space's whole grid, single process (``evaluate_points``, rows as
dicts, and ``evaluate_frame``, rows as columns; median of ``--repeats`` runs after one warm-up
run), one-by-one evaluation of ``--slow-points`` grid points, and the resumable runner (CSV with
fsync per chunk) with one process and with ``--workers`` on a large sweep: the same space with
its last range parameter sampled more densely, to at least ``--large`` grid points.  Every
one-by-one row is checked equal to its fast-path row (status, reason, every metric to rtol 1e-9)
before any time is reported.  Writes benchmarks/results/dse.json.
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

from accelsim.dse import runner, search
from accelsim.dse.evaluate import Job, evaluate_points_scalar
from accelsim.dse.fastpath import evaluate_frame, evaluate_points
from accelsim.dse.space import METRICS, Space, SpaceSpec, load_space
from accelsim.model.spec import load_model
from accelsim.workload import Workload

ROOT = Path(__file__).resolve().parent.parent
SPACES = [ROOT / "hw_configs/spaces/hardwired.yaml", ROOT / "hw_configs/spaces/systolic.yaml"]


def _rate(fn, points: int, repeats: int) -> tuple[float, float]:
    """Points per second of wall time and of this process's CPU time: medians of ``repeats``
    timed runs after one untimed warm-up (CPU time is what a loaded machine does not skew)."""
    fn()
    wall, cpu = [], []
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return points / statistics.median(wall), points / statistics.median(cpu)


def _check_equal(fast: list[dict], slow: list[dict]) -> None:
    by_id = {r["point_id"]: r for r in fast}
    for s in slow:
        f = by_id[s["point_id"]]
        assert (f["status"], f["reason"]) == (s["status"], s["reason"]), (f, s)
        if s["status"] == "ok":
            for m in METRICS:
                assert math.isclose(f[m], s[m], rel_tol=1e-9), (m, f[m], s[m])


def _runner_rate(job: Job, points: list[dict], workers: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        runner.run(job, points, Path(tmp) / "r.csv", workers=workers)
        return len(points) / (time.perf_counter() - t)


def dense(space: Space, at_least: int) -> Space:
    """``space`` with its last range parameter's ``num`` raised until the grid has at least
    ``at_least`` points."""
    doc = space.spec.model_dump()
    last = next(p for p in reversed(doc["parameters"]) if p["linear"] or p["log"])
    r = last["linear"] or last["log"]
    grid = len(search.grid_points(space))
    r["num"] = r["num"] * -(-at_least // grid)
    return Space(SpaceSpec.model_validate(doc), space.source, space.base_source, copy.deepcopy(space.base))


def bench_space(path: Path, slow_points: int, workers: int, large: int, repeats: int) -> dict:
    space = load_space(path)
    job = Job(space, load_model("llama-3.1-8b"), Workload(**space.spec.workload.model_dump()))
    points = search.grid_points(space)
    fast = evaluate_points(job, points)
    fast_rate, fast_cpu = _rate(lambda: evaluate_points(job, points), len(points), repeats)
    frame_rate, _ = _rate(lambda: evaluate_frame(job, points), len(points), repeats)

    sample = points[:: max(1, len(points) // slow_points)][:slow_points]
    evaluate_points_scalar(job, sample[:1])  # warm the model and config caches
    t = time.perf_counter()
    slow = evaluate_points_scalar(job, sample)
    slow_rate = len(sample) / (time.perf_counter() - t)
    _check_equal(fast, slow)

    big = search.grid_points(dense(space, large))
    one = _runner_rate(job, big, 1)
    many = _runner_rate(job, big, workers)
    return {
        "space": str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path),
        "model": "llama-3.1-8b", "workload": job.workload.describe(),
        "grid_points": len(points),
        "statuses": {s: sum(r["status"] == s for r in fast) for s in sorted({r["status"] for r in fast})},
        "fast_points_per_s": fast_rate,
        "fast_points_per_cpu_s": fast_cpu,
        "fast_columns_points_per_s": frame_rate,
        "one_by_one_points": len(sample), "one_by_one_points_per_s": slow_rate,
        "speedup_fast_over_one_by_one": fast_rate / slow_rate,
        "runner_points": len(big),
        "runner_1_process_points_per_s": one,
        f"runner_{workers}_processes_points_per_s": many,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--space", action="append", type=Path, help="space file (repeatable)")
    ap.add_argument("--slow-points", type=int, default=20)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--large", type=int, default=20000, help="grid points of the runner timing")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    spaces = [p.resolve() for p in args.space] if args.space else SPACES
    result = {
        "spaces": [bench_space(p, args.slow_points, args.workers, args.large, args.repeats) for p in spaces],
        "workers": args.workers,
        "cpu": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "load_average_at_end": os.getloadavg()[0],
    }
    out = ROOT / "benchmarks" / "results" / "dse.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
