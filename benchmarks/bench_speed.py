"""Issue 20's speed and scale targets, each beside a baseline measured in the same run (the
machines are shared: absolute numbers move with the load, ratios much less).  Writes
benchmarks/results/speed.json.

    python benchmarks/bench_speed.py                 # everything (several minutes)
    python benchmarks/bench_speed.py --only cli,pareto --sweep-points 100000

Parts (``--only``):
  cli      `accelsim --help`, `accelsim run` (default job), `accelsim op` (small GEMM): wall and
           CPU seconds of a fresh process, median of --repeats; baseline `python -c "import numpy"`.
  simulate one-by-one ``accelsim.simulate`` of Llama-3.1-8B decode on H100 by name, batch,
           context and formats drawn at random per call: configurations per second (wall and
           CPU) for fresh configurations, for each on two chips, and for a revisited set, each
           beside the same calls with the cross-call memos cleared (``bench_simulate``);
           with --simulate-baseline REF also the fresh loop on REF's code (``git archive``,
           a child process), e.g. the commit before a speed change; with --simulate-rounds K
           also K rounds of REF's code and this code in turn, each in a fresh process.
  fastpath design points per second, single process, on the bundled grids (densified to
           --points), and random search and NSGA-II on the same spaces (rows as the runner writes them).
           With --baseline-tree DIR (an older checkout, e.g. `git archive REV | tar -x -C DIR`),
           the same part runs on that code first, in a fresh process in the same run, and the
           ratios of every rate to it are recorded (``fastpath.baseline``, ``ratio_to_baseline``).
  pareto   the front of n random points in 2, 3 and 4 objectives; baseline the O(n^2)
           definition on a 5,000-point subset, both timed here.
  yaml     first parse of every bundled YAML: libyaml first (with the reference loader's limits)
           beside the pure-Python loader alone.
  sweep    a --sweep-points grid sweep end to end in a fresh process (`accelsim sweep
           --workers 2`: evaluation, CSV + Parquet, front, report), wall time and peak memory,
           and peak memory of a 10x smaller sweep (flat memory: the two should be close).
"""
from __future__ import annotations

import argparse
import gc
import itertools
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "results" / "speed.json"
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
CLI = [sys.executable, "-c", "import sys; from accelsim.cli import main; sys.exit(main())"]


def _process(args: list[str], repeats: int) -> dict:
    """Median wall and CPU seconds (user + system of the child) of a fresh process."""
    wall, cpu = [], []
    for _ in range(repeats):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t = time.perf_counter()
        subprocess.run(args, env=ENV, cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wall.append(time.perf_counter() - t)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return {"wall_s": statistics.median(wall), "cpu_s": statistics.median(cpu)}


def bench_cli(repeats: int) -> dict:
    base = _process([sys.executable, "-c", "import numpy"], repeats)
    out = {"baseline_python_import_numpy": base}
    for name, args in (("help", ["--help"]), ("run", ["run"]),
                       ("op", ["op", "--hw", "tpu-v5e", "matmul", "--m", "256", "--k", "256", "--n", "256"])):
        r = _process(CLI + args, repeats)
        r["cpu_ratio_to_baseline"] = r["cpu_s"] / base["cpu_s"]
        out[name] = r
    out["targets_s"] = {"help": 0.3, "run": 1.0, "op": 0.5}
    return out


def _clear_step_memos() -> None:
    """Forget every cross-call memo of the one-by-one path (the same-run baseline: each call
    then lowers, fuses, places and costs from scratch, as before issue 20's memos)."""
    from accelsim import api, pipeline
    from accelsim.hardware import base, common, gpu
    from accelsim.model import lower
    from accelsim.sim import mapper
    from accelsim.transform import fusion
    for memo in (pipeline._TYPED, pipeline._LOWERED, pipeline._FUSED, pipeline._JOINED, mapper._KEYS,
                 mapper._COSTS, common._FOOTPRINTS, common._PEAKS, api._TRUST, base._COST_PARAMS):
        memo.clear()
    fusion._PLANS.clear()
    mapper._ROW_PLANS.clear()
    fusion._COPIES.clear()
    fusion._LAYOUTS.clear()
    lower._NAMES.clear()
    gpu._TILINGS.clear()
    gpu._STACKED.clear()


# The fresh loop run by another checkout of this repository (``git archive`` of a ref into a
# temporary folder) in a child process: a baseline of older code, timed in the same run.
_OTHER_CHECKOUT = """
import json, sys, time
sys.path.insert(0, "benchmarks")
from bench_speed import _configs, _rate
from accelsim import Workload, simulate
simulate("llama-3.1-8b", "h100-sxm", Workload(phase="decode", batch=1, context=2048))
print(json.dumps(_rate(_configs(int(sys.argv[1]), seed=1))))
"""


def _fresh_at(ref: str, n: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref], check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        return {"ref": ref, **_fresh_in(tmp, n)}


def _fresh_in(tree: str | Path, n: int) -> dict:
    """The fresh loop in a new process running the code in ``tree``."""
    done = subprocess.run([sys.executable, "-c", _OTHER_CHECKOUT, str(n)], cwd=tree, check=True,
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(tree)})
    return json.loads(done.stdout.strip().splitlines()[-1])


def fresh_pairs(ref: str, n: int, rounds: int) -> dict:
    """The fresh loop in a new process on ``ref``'s code, then on this code, ``rounds`` times in
    turn (both sides alike: a fresh process, the same configurations), so load swings on a
    shared machine hit both; the median of each side and of the per-round ratios."""
    older, here, ratios = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref], check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        for _ in range(rounds):
            older.append(_fresh_in(tmp, n)["configs_per_cpu_s"])
            here.append(_fresh_in(ROOT, n)["configs_per_cpu_s"])
            ratios.append(here[-1] / older[-1])
    return {"ref": ref, "configs": n, "rounds": rounds, "ref_configs_per_cpu_s": older,
            "this_configs_per_cpu_s": here, "ratios": ratios, "median_ref": statistics.median(older),
            "median_this": statistics.median(here), "median_ratio": statistics.median(ratios)}


def _configs(n: int, seed: int) -> list[tuple[str, dict, dict]]:
    """``n`` one-by-one configurations of Llama-3.1-8B decode as a user varies them: batch
    1..32, context 256..8192 tokens, weight and KV formats bf16/fp8 (drawn at random, so
    almost every one is new to the process)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        workload = {"phase": "decode", "batch": int(rng.integers(1, 33)),
                    "context": int(rng.integers(256, 8193))}
        formats = {"weight_dtype": str(rng.choice(["bf16", "fp8"])), "kv_dtype": str(rng.choice(["bf16", "fp8"]))}
        out.append(("h100-sxm", workload, formats))
    return out


def _rate(calls: list[tuple[str, dict, dict]], before_each=None) -> dict:
    from accelsim import Workload, simulate
    wall = cpu = 0.0
    for hw, workload, formats in calls:
        if before_each is not None:
            before_each()
        t, c = time.perf_counter(), time.process_time()
        simulate("llama-3.1-8b", hw, Workload(**workload), **formats)
        wall += time.perf_counter() - t
        cpu += time.process_time() - c
    return {"configs": len(calls), "configs_per_s": len(calls) / wall, "configs_per_cpu_s": len(calls) / cpu}


def bench_simulate(n: int, baseline_ref: str | None = None, rounds: int = 0) -> dict:
    """One-by-one ``simulate`` of Llama-3.1-8B decode on H100 (by name), three ways a loop meets
    configurations, each beside the same calls with every cross-call memo cleared first:

    - ``fresh``: every configuration new (random batch, context and formats);
    - ``across_chips``: each configuration on H100 then H200 (a comparison: the second chip
      reuses the first's lowered and fused graph);
    - ``revisited``: a set of configurations visited again (a parameter scan or a serving
      simulation asking the same step shapes): lowering, fusion and op costs all reused."""
    from accelsim import Workload, simulate
    simulate("llama-3.1-8b", "h100-sxm", Workload(phase="decode", batch=1, context=2048))  # imports
    simulate("llama-3.1-8b", "h200", Workload(phase="decode", batch=1, context=2048))
    fresh_calls = _configs(n, seed=1)
    baseline = _rate(_configs(n, seed=2), before_each=_clear_step_memos)
    # the same fresh configurations through the older code, just before this code runs them
    older = _fresh_at(baseline_ref, n) if baseline_ref else None
    fresh = _rate(fresh_calls)
    pairs = [(chip, w, f) for _, w, f in _configs(n // 2, seed=3) for chip in ("h100-sxm", "h200")]
    across = _rate(pairs)
    revisit_set = _configs(16, seed=4)
    _rate(revisit_set)  # first visit
    revisited = _rate(revisit_set * max(1, n // 16))
    out = {"baseline_memos_cleared_each_call": baseline, "fresh": fresh, "across_chips": across,
           "revisited": revisited, "target_per_s": 1000}
    for name in ("fresh", "across_chips", "revisited"):
        out[name]["cpu_ratio_to_baseline"] = out[name]["configs_per_cpu_s"] / baseline["configs_per_cpu_s"]
    if older is not None:
        out["fresh_at_baseline_ref"] = older
        out["fresh"]["cpu_ratio_to_baseline_ref"] = fresh["configs_per_cpu_s"] / older["configs_per_cpu_s"]
        if rounds:
            out["fresh_pairs_against_baseline_ref"] = fresh_pairs(baseline_ref, n, rounds)
    return out


def _job(path: Path, points: int):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_dse import dense

    from accelsim.dse.evaluate import Job
    from accelsim.dse.space import load_space
    from accelsim.model.spec import load_model
    from accelsim.workload import Workload
    space = dense(load_space(path), points)
    return Job(space, load_model("llama-3.1-8b"), Workload(**space.spec.workload.model_dump()))


def _timed(fn) -> tuple[float, float]:
    t, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - t, time.process_time() - c


def _settled(fn) -> tuple[float, float, float]:
    """``_timed`` after collecting the garbage left before it, and then the CPU seconds of one
    full collection right after it: the fast path holds the collector off per chunk, so up to
    one full pass over the heap may be left for later; it is reported beside the rate (and
    the rate with it charged) rather than hidden or charged twice."""
    gc.collect()
    wall, cpu = _timed(fn)
    c = time.process_time()
    gc.collect()
    return wall, cpu, time.process_time() - c


def bench_fastpath(points: int, samples: int) -> dict:
    from accelsim.dse import runner, search
    from accelsim.dse.evaluate import evaluate_points_scalar
    out = []
    for name in ("hardwired.yaml", "systolic.yaml"):
        job = _job(ROOT / "hw_configs" / "spaces" / name, points)
        with tempfile.TemporaryDirectory() as tmp:
            csv_path = Path(tmp) / "r.csv"
            runner.stream(job, search.iter_grid_points(job.space), csv_path, distinct=True,
                          total=search.grid_size(job.space))  # warm-up: lowering, caches
            n = search.grid_size(job.space)
            wall, cpu, gc_grid = _settled(lambda job=job, csv_path=csv_path, n=n: runner.stream(
                job, search.iter_grid_points(job.space), csv_path, distinct=True, total=n))
            rw, rc, gc_random = _settled(lambda job=job, csv_path=csv_path: runner.stream(
                job, search.iter_random_points(job.space, samples, 1), csv_path, total=samples))

            def evolve(job=job, csv_path=csv_path):
                def evaluate(pts, job=job, csv_path=csv_path):
                    return runner.run(job, pts, csv_path, resume=True)
                csv_path.write_text("", encoding="utf-8")
                search.nsga2(job.space, evaluate, job.space.spec.objectives, job.space.constraints,
                             samples // 10, 0, population=256)
            ew, ec, gc_nsga2 = _settled(evolve)
            evolved = csv_path.read_text().count("\n") - 1
            # the same-run baseline: the same grid's points one at a time through ``simulate``
            # (the scalar path every fast-path row must equal)
            sample = list(itertools.islice(search.iter_grid_points(job.space), 0, None, max(1, n // 20)))[:20]
            bw, bc, _ = _settled(lambda job=job, sample=sample: evaluate_points_scalar(job, sample))
        out.append({"space": name, "one_by_one_points_per_s": len(sample) / bw,
                    "one_by_one_points_per_cpu_s": len(sample) / bc,
                    "grid_cpu_ratio_to_one_by_one": (n / cpu) / (len(sample) / bc),
                    "random_cpu_ratio_to_one_by_one": (samples / rc) / (len(sample) / bc),
                    "grid_points": n, "grid_points_per_s": n / wall,
                    "grid_points_per_cpu_s": n / cpu, "random_points": samples,
                    "random_points_per_s": samples / rw, "random_points_per_cpu_s": samples / rc,
                    "nsga2_points": evolved, "nsga2_points_per_s": evolved / ew,
                    "nsga2_points_per_cpu_s": evolved / ec,
                    # one full garbage collection right after each part (CPU s), and the rate
                    # with it charged to the part
                    "gc_after_cpu_s": {"grid": gc_grid, "random": gc_random, "nsga2": gc_nsga2},
                    "grid_points_per_cpu_s_gc_charged": n / (cpu + gc_grid),
                    "random_points_per_cpu_s_gc_charged": samples / (rc + gc_random),
                    "nsga2_points_per_cpu_s_gc_charged": evolved / (ec + gc_nsga2)})
    return {"spaces": out, "targets_per_s": {"grid": 100_000, "random_and_evolutionary": 20_000}}


def _fastpath_in(tree: Path, points: int, samples: int) -> dict:
    """``bench_fastpath`` on the code in ``tree``: a fresh process importing it, this file's
    function run there."""
    code = ("import json, sys; sys.path.insert(0, sys.argv[1]); import bench_speed; "
            "print(json.dumps(bench_speed.bench_fastpath(int(sys.argv[2]), int(sys.argv[3]))))")
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return json.loads(subprocess.run([sys.executable, "-c", code, str(ROOT / "benchmarks"), str(points),
                                      str(samples)], env=env, cwd=tree, check=True, capture_output=True,
                                     text=True).stdout.strip().splitlines()[-1])


_RATES = ("grid_points_per_cpu_s", "random_points_per_cpu_s", "nsga2_points_per_cpu_s",
          "random_points_per_s", "nsga2_points_per_s")


def fastpath_rounds(tree: Path, points: int, samples: int, rounds: int) -> dict:
    """``rounds`` rounds of ``bench_fastpath``, each on ``tree``'s code and then on this code,
    every run in a fresh process: a machine whose load swings within seconds moves a single
    pair's ratio by tens of per cent (a 0.1 s NSGA-II run most), so every round's rates and
    ratios are kept, with their medians."""
    runs = [(_fastpath_in(tree, points, samples), _fastpath_in(ROOT, points, samples)) for _ in range(rounds)]
    out: dict = {"rounds": rounds, "tree": str(tree), "spaces": {}}
    for k, first in enumerate(runs[0][1]["spaces"]):
        per: dict = {}
        for rate in _RATES:
            base = [before["spaces"][k][rate] for before, _ in runs]
            now = [after["spaces"][k][rate] for _, after in runs]
            ratios = [a / b for a, b in zip(now, base)]
            per[rate] = {"baseline": base, "this": now, "ratios": ratios,
                         "median_baseline": statistics.median(base), "median_this": statistics.median(now),
                         "median_ratio": statistics.median(ratios)}
        out["spaces"][first["space"]] = per
    return out


def bench_fastpath_against(tree: Path, points: int, samples: int) -> dict:
    """``bench_fastpath`` on the code in ``tree`` (a fresh process importing it, this file's
    function run there), then here; every points-per-second figure beside its ratio."""
    before = _fastpath_in(tree, points, samples)
    after = bench_fastpath(points, samples)
    for now, then in zip(after["spaces"], before["spaces"]):
        now["ratio_to_baseline"] = {k: now[k] / then[k] for k in now
                                    if k.endswith(("_per_cpu_s", "_per_s", "_gc_charged")) and k in then}
    after["baseline"] = {"tree": str(tree), **before}
    return after


def bench_yaml(repeats: int) -> dict:
    """First parse of every bundled YAML file (chips, models, spaces): libyaml first with the
    reference loader's limits (``loader._load_yaml``) beside the pure-Python loader alone, the
    same texts in the same run (a spec read again is served from the text cache either way)."""
    import yaml

    from accelsim.config import loader
    texts = [p.read_text(encoding="utf-8") for folder in ("hw_configs", "models", "hw_configs/spaces")
             for p in sorted((ROOT / folder).glob("*.yaml"))]
    reference = min(_timed(lambda: [yaml.load(t, Loader=loader._UniqueKeyLoader) for t in texts])[1]
                    for _ in range(repeats))
    first = min(_timed(lambda: [loader._load_yaml(t) for t in texts])[1] for _ in range(repeats))
    return {"files": len(texts), "pure_python_cpu_s": reference, "libyaml_first_cpu_s": first,
            "speedup": reference / first}


def _definition(values: np.ndarray) -> np.ndarray:
    keep = np.ones(len(values), dtype=bool)
    for i in range(len(values)):
        keep[i] = not np.any(np.all(values <= values[i], axis=1) & np.any(values < values[i], axis=1))
    return keep


def bench_pareto(n: int) -> dict:
    from accelsim.dse import pareto
    rng = np.random.default_rng(0)
    out = {}
    for k in (2, 3, 4):
        values = rng.random((n, k))
        small = values[:5000]
        base, _ = _timed(lambda small=small: _definition(small))
        fast_small, _ = _timed(lambda small=small: pareto.pareto_mask(small))
        fast, _ = _timed(lambda values=values: pareto.pareto_mask(values))
        # the O(n^2) definition grows with n^2: its time at n, extrapolated from the subset
        out[f"{k}d"] = {"points": n, "front_s": fast, "definition_s_at_5000": base,
                        "front_s_at_5000": fast_small, "speedup_at_5000": base / fast_small,
                        "definition_s_at_n_extrapolated": base * (n / 5000) ** 2}
    return out


def _sweep_space(points: int, folder: Path) -> Path:
    """The bundled hardwired space with its clock grid made fine enough for ``points`` points."""
    import yaml
    doc = yaml.safe_load((ROOT / "hw_configs" / "spaces" / "hardwired.yaml").read_text(encoding="utf-8"))
    fixed = 7 * 29
    doc["parameters"][2]["linear"]["num"] = -(-points // fixed)
    doc["base"] = "hardwired-llama-3.1-8b"
    path = folder / f"space-{points}.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return path


def _sweep(points: int, folder: Path) -> dict:
    space = _sweep_space(points, folder)
    out = folder / f"out-{points}"
    args = ["/usr/bin/time", "-f", "%e %M"] + CLI + ["sweep", "--space", str(space), "--out", str(out),
                                                     "--workers", "2"]
    done = subprocess.run(args, env=ENV, cwd=ROOT, check=True, capture_output=True, text=True)
    wall, peak_kb = done.stderr.strip().splitlines()[-1].split()
    return {"points": points, "wall_s": float(wall), "peak_rss_mb_main_process": int(peak_kb) / 1024,
            "summary": done.stdout.strip().splitlines()[0],
            "files": sorted(p.name for p in out.iterdir())}


def bench_sweep(points: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        small = _sweep(points // 10, Path(tmp))
        large = _sweep(points, Path(tmp))
    return {"small": small, "large": large, "target_s": 120,
            "peak_rss_ratio_large_to_small": large["peak_rss_mb_main_process"] / small["peak_rss_mb_main_process"]}


def _fastpath(args: argparse.Namespace) -> dict:
    if not args.baseline_tree:
        return bench_fastpath(args.points, args.samples)
    out = bench_fastpath_against(args.baseline_tree, args.points, args.samples)
    if args.fastpath_rounds:
        out["rounds_against_baseline"] = fastpath_rounds(args.baseline_tree, args.points, args.samples,
                                                         args.fastpath_rounds)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", default="cli,simulate,fastpath,pareto,sweep,yaml")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--simulate", type=int, default=200)
    ap.add_argument("--simulate-baseline", default=None, metavar="REF",
                    help="also time the fresh loop on this git ref's code (a child process)")
    ap.add_argument("--simulate-rounds", type=int, default=0, metavar="K",
                    help="with --simulate-baseline: K rounds of the fresh loop in fresh processes, "
                         "REF's code then this code in turn (medians and per-round ratios)")
    ap.add_argument("--points", type=int, default=100_000)
    ap.add_argument("--samples", type=int, default=20_000)
    ap.add_argument("--pareto-points", type=int, default=1_000_000)
    ap.add_argument("--sweep-points", type=int, default=1_000_000)
    ap.add_argument("--baseline-tree", type=Path, default=None,
                    help="an older checkout to run the fastpath part on first, for same-run ratios")
    ap.add_argument("--fastpath-rounds", type=int, default=0, metavar="K",
                    help="with --baseline-tree: K more rounds of the fastpath part in fresh processes, "
                         "the baseline's code then this code in turn (every round's rates, and medians)")
    args = ap.parse_args()
    parts = args.only.split(",")
    results: dict = {"machine": {"python": platform.python_version(), "cpu": platform.machine(),
                                 "cpus": os.cpu_count(), "load_average_at_start": os.getloadavg()[0]}}
    runs = {"cli": lambda: bench_cli(args.repeats),
            "simulate": lambda: bench_simulate(args.simulate, args.simulate_baseline, args.simulate_rounds),
            "fastpath": lambda: _fastpath(args),
            "pareto": lambda: bench_pareto(args.pareto_points), "sweep": lambda: bench_sweep(args.sweep_points),
            "yaml": lambda: bench_yaml(args.repeats)}
    for part in parts:
        if part not in runs:
            sys.exit(f"error: --only: unknown part {part!r}; allowed: {', '.join(runs)}")
        print(f"-- {part}", flush=True)
        results[part] = runs[part]()
        print(json.dumps(results[part], indent=1), flush=True)
    results["machine"]["load_average_at_end"] = os.getloadavg()[0]
    OUT.parent.mkdir(parents=True, exist_ok=True)
    previous = json.loads(OUT.read_text()) if OUT.is_file() else {}
    OUT.write_text(json.dumps({**previous, **results}, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
