"""Design points per second: the vectorised fast path against one-by-one evaluation through
``accelsim.api.simulate``, measured in the same run on the same space (Llama-3.1-8B decode).

    python benchmarks/bench_dse.py [--space hw_configs/spaces/hardwired.yaml] [--slow-points 20]

Writes benchmarks/results/dse.json.  The fast path is timed single-process and with the
local process runner (``--workers``); results are checked equal before any time is reported.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import tempfile
import time
from pathlib import Path

from accelsim.dse import runner, search
from accelsim.dse.evaluate import Job, evaluate_points_scalar
from accelsim.dse.fastpath import evaluate_points
from accelsim.dse.space import load_space
from accelsim.model.spec import load_model
from accelsim.workload import Workload

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--space", default=str(ROOT / "hw_configs/spaces/hardwired.yaml"))
    ap.add_argument("--slow-points", type=int, default=20)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()

    space = load_space(args.space)
    job = Job(space, load_model("llama-3.1-8b"), Workload(**space.spec.workload.model_dump()))
    points = search.grid_points(space)
    evaluate_points(job, points[:8])  # warm caches (model parse, lowering code paths)

    t = time.perf_counter()
    fast = evaluate_points(job, points)
    fast_s = time.perf_counter() - t

    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        runner.run(job, points, Path(tmp) / "r.csv", workers=args.workers)
        parallel_s = time.perf_counter() - t

    sample = points[:: max(1, len(points) // args.slow_points)][: args.slow_points]
    t = time.perf_counter()
    slow = evaluate_points_scalar(job, sample)
    slow_s = time.perf_counter() - t
    by_id = {r["point_id"]: r for r in fast}
    for s in slow:
        f = by_id[s["point_id"]]
        assert f["status"] == s["status"]
        if s["status"] == "ok":
            assert math.isclose(f["tokens_per_s"], s["tokens_per_s"], rel_tol=1e-9)

    result = {
        "space": str(Path(args.space).relative_to(ROOT)) if args.space.startswith(str(ROOT)) else args.space,
        "model": "llama-3.1-8b", "workload": job.workload.describe(), "points": len(points),
        "fast_points_per_s": len(points) / fast_s,
        "fast_parallel_points_per_s": len(points) / parallel_s, "workers": args.workers,
        "one_by_one_points": len(sample), "one_by_one_points_per_s": len(sample) / slow_s,
        "speedup_fast_over_one_by_one": (len(points) / fast_s) / (len(sample) / slow_s),
        "cpu": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
        "python": platform.python_version(),
    }
    out = ROOT / "benchmarks" / "results" / "dse.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
