"""Time the serving simulation and the event-driven engine on Llama-3.1-70B over 8 H100s
(tensor parallelism 8).  Writes benchmarks/results/serving.json.

    python benchmarks/bench_serving.py            # 100,000 requests (issue 20's target: < 10 s)
    python benchmarks/bench_serving.py --requests 2000
    python benchmarks/bench_serving.py --requests 100000 --only-prefix-cache   # the issue-16 case

The prefix-cache case serves the same requests with a 768-token prefix shared by every prompt,
``--prefix-cache`` and ``--kv-offload host`` on (the features' bookkeeping in the loop).

The serving run is timed twice more with speculative decoding on (draft Llama-3.2-1B on the same
chips, K = 3, acceptance 0.8): issue 16's features must keep the target.

Serving time is split into filling the step-cost memo (one ``accelsim.api.simulate`` call per
bucketed batch shape) and the scheduler loop; a second run over the same requests with the memo
warm times the loop alone.
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

from accelsim.api import cost_model
from accelsim.api import timeline as step_timeline
from accelsim.sim import serving
from accelsim.sim.speculative import SpecDecode
from accelsim.transform import Parallelism
from accelsim.workload import Workload

HERE = Path(__file__).resolve().parent
OUT = HERE / "results" / "serving.json"
MODEL, HW, PARALLEL = "llama-3.1-70b", "h100-sxm", Parallelism(tp=8)
SPEC = SpecDecode("llama-3.2-1b", 3, 0.8)


SHARED_PREFIX = 768


def bench_serving(n: int, rate: float, spec_decode: SpecDecode | None = None, prefix_cache: bool = False) -> dict:
    shared = SHARED_PREFIX if prefix_cache else 0
    requests = serving.synthetic_requests(n, rate, prompt=1024, output=256, seed=0, shared_prefix=shared)
    config = (serving.ServeConfig(prefix_cache=True, kv_offload="host") if prefix_cache
              else serving.ServeConfig())
    # Wall time, and beside it this process's CPU time: on a shared machine the wall clock
    # also counts other jobs, the CPU time only this one (compare those across runs).
    t0, c0 = time.perf_counter(), time.process_time()
    costs = cost_model(MODEL, HW, parallelism=PARALLEL, spec_decode=spec_decode)
    cold_start, cpu_cold_start = time.perf_counter(), time.process_time()
    result = serving.serve(requests, costs, config, rate)
    cold, cpu_cold = time.perf_counter() - cold_start, time.process_time() - cpu_cold_start
    simulate_calls = costs.calls
    warm_start, cpu_warm_start = time.perf_counter(), time.process_time()
    again = serving.serve(requests, costs, config, rate)
    warm, cpu_warm = time.perf_counter() - warm_start, time.process_time() - cpu_warm_start
    assert again.summary() == result.summary()  # deterministic
    s = result.summary()
    return {"requests": n, "rate_req_per_s": rate, "prompt": 1024, "output": 256,
            "scheduler": "continuous", "spec_decode": None if spec_decode is None else
            {"draft": spec_decode.draft, "k": spec_decode.k, "accept": spec_decode.accept},
            "setup_s": cold_start - t0, "wall_s_cold_memo": cold,
            "wall_s_setup_and_cold": cold + cold_start - t0,
            "cpu_s_setup_and_cold": cpu_cold + cpu_cold_start - c0, "cpu_s_warm_memo": cpu_warm,
            "wall_s_warm_memo": warm, "simulate_calls": simulate_calls, "steps": s["steps"],
            "us_per_step_warm": warm / s["steps"] * 1e6,
            "ttft_p50_s": s["ttft_s"]["p50"], "ttft_p99_s": s["ttft_s"]["p99"],
            "tpot_p50_s": s["tpot_s"]["p50"], "tpot_p99_s": s["tpot_s"]["p99"],
            "throughput_tokens_per_s": s["throughput_tokens_per_s"],
            "joules_per_token": s["joules_per_token"], "max_running": s["max_running"],
            "preemptions": s["preemptions"], "speculative": s["speculative"],
            **({"shared_prefix": shared, "prefix_cache": s["prefix_cache"], "kv_offload": s["kv_offload"]}
               if prefix_cache else {})}


def bench_engine(batch: int, context: int) -> list[dict]:
    rows = []
    for overlap in ("none", "double_buffered"):
        t = time.perf_counter()
        tl = step_timeline(MODEL, HW, Workload("decode", batch, 1, context), overlap=overlap,
                           parallelism=PARALLEL)
        rows.append({"overlap": overlap, "batch": batch, "context": context,
                     "wall_s": time.perf_counter() - t, "activities": len(tl.intervals),
                     "makespan_s": tl.makespan_s, "analytical_s": tl.analytical_s,
                     "busiest_resource_s": tl.max_busy_s,
                     "utilisation": {k: round(v, 4) for k, v in tl.utilisation().items()}})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--rate", type=float, default=8.0)
    parser.add_argument("--only-prefix-cache", action="store_true",
                        help="time only the prefix-cache case; print it, write nothing")
    args = parser.parse_args()
    if args.only_prefix_cache:
        print(json.dumps(bench_serving(args.requests, args.rate, prefix_cache=True), indent=2))
        return
    payload = {
        "model": MODEL, "hw": HW, "parallelism": PARALLEL.to_dict(),
        "machine": {"python": platform.python_version(), "cpu": platform.processor() or platform.machine()},
        "serving": bench_serving(args.requests, args.rate),
        "serving_spec_decode": bench_serving(args.requests, args.rate, SPEC),
        "serving_prefix_cache": bench_serving(args.requests, args.rate, prefix_cache=True),
        "engine_decode_step": bench_engine(32, 2048),
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(payload, indent=2), encoding="utf-8")
    print(json.dumps(payload, indent=2))


if __name__ == "__main__":
    main()
