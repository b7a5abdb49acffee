"""The same job in accelsim and in two peer estimators, timed in the same run: Llama-3.1-8B
decode on one H100 (batch 1..16, context 1,024..1,920 varying per call, bf16).  Writes
benchmarks/results/peers.json.

    python benchmarks/bench_peers.py [--calls 200]

Each peer is installed into its own virtual environment under benchmarks/.venvs/ (kept between
runs; never the project's environment) from the package registry, and timed by a small driver
run with that environment's Python: configurations per second of wall and CPU time inside the
driver (process start and imports excluded, as for accelsim).  A peer that cannot be installed
or run is recorded as skipped, with the reason.  Peers (see shared PEERS.md):
  llm-analysis 0.2.2   closed-form latency and memory
  genz-llm 0.0.16      operator-level roofline with efficiency derates (GenZ)
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENVS = ROOT / "benchmarks" / ".venvs"
OUT = ROOT / "benchmarks" / "results" / "peers.json"

# Llama-3.1-8B's shape (models/llama-3.1-8b.yaml; source: the model's Hugging Face config.json).
LLAMA = {"hidden": 4096, "layers": 32, "heads": 32, "kv_heads": 8, "ffn": 14336, "vocab": 128256}

# Each driver prints one JSON line: {"calls", "wall_s", "cpu_s", "first_latency_as_reported"} (the
# batch-1, 1,024-token step latency in the tool's own unit: seconds for accelsim and llm-analysis,
# milliseconds for GenZ), so a reader can see the three estimate the same job.
DRIVERS = {
    "llm-analysis": r"""
import json, sys, time
from llm_analysis.analysis import LLMAnalysis
from llm_analysis.config import (ModelConfig, ParallelismConfig, get_dtype_config_by_name,
                                 get_gpu_config_by_name)
m = json.loads(sys.argv[2])
# llm-analysis models a two-matrix MLP whose width is a whole multiple of the hidden size, so
# Llama's gated 3 x 4096 x 14336 MLP is approximated by 2 x 4096 x 20480 (4.8 % fewer weights).
model = ModelConfig(name="llama-3.1-8b", num_layers=m["layers"], n_head=m["heads"], hidden_dim=m["hidden"],
                    vocab_size=m["vocab"], max_seq_len=131072, num_key_value_heads=m["kv_heads"],
                    ffn_embed_dim=5 * m["hidden"], model_type="llama")
gpu = get_gpu_config_by_name("h100-sxm-80gb")
dtype = get_dtype_config_by_name("w16a16e16")
calls = int(sys.argv[1])
first = None
t, c = time.perf_counter(), time.process_time()
for i in range(calls):
    a = LLMAnalysis(model, gpu, dtype, ParallelismConfig())
    out = a.inference(batch_size_per_gpu=1 + i % 16, seq_len=1024 + 128 * (i % 8), num_tokens_to_generate=1)
    if first is None:
        first = out.get("decode_latency") if isinstance(out, dict) else None
print(json.dumps({"calls": calls, "wall_s": time.perf_counter() - t, "cpu_s": time.process_time() - c,
                  "first_latency_as_reported": first}))
""",
    "genz-llm": r"""
import json, sys, time
from GenZ import decode_moddeling
calls = int(sys.argv[1])
# H100 SXM: dense bf16 989 TFLOP/s, 3.35 TB/s HBM, 80 GB (source: NVIDIA H100 datasheet)
system = {"Flops": 989, "Memory_size": 80, "Memory_BW": 3350, "ICN": 450, "real_values": True}
first = None
t, c = time.perf_counter(), time.process_time()
for i in range(calls):
    out = decode_moddeling(model="meta-llama/Llama-3.1-8B", batch_size=1 + i % 16,
                           input_tokens=1024 + 128 * (i % 8), output_tokens=1, system_name=system,
                           bits="bf16", tensor_parallel=1, pipeline_parallel=1)
    if first is None:
        first = out.get("Latency") if isinstance(out, dict) else None
print(json.dumps({"calls": calls, "wall_s": time.perf_counter() - t, "cpu_s": time.process_time() - c,
                  "first_latency_as_reported": first}))
""",
}
PACKAGES = {"llm-analysis": ["llm-analysis==0.2.2"], "genz-llm": ["genz-llm==0.0.16"]}


def _python(peer: str) -> tuple[Path | None, str]:
    """The peer's venv Python, installing it on first use; (None, reason) when that fails."""
    env = VENVS / peer
    python = env / "bin" / "python"
    marker = env / ".installed"
    if marker.is_file():
        return python, ""
    try:
        venv.create(env, with_pip=True, clear=True)
    except Exception as err:  # noqa: BLE001 (any failure is a stated skip)
        return None, f"cannot create a venv: {err}"
    done = subprocess.run([str(python), "-m", "pip", "install", "-q", *PACKAGES[peer]],
                          capture_output=True, text=True, timeout=1200, check=False)
    if done.returncode != 0:
        return None, f"pip install {' '.join(PACKAGES[peer])} failed: {done.stderr.strip()[-300:]}"
    marker.write_text("ok\n", encoding="utf-8")
    return python, ""


def bench_peer(peer: str, calls: int) -> dict:
    python, reason = _python(peer)
    if python is None:
        return {"skipped": reason}
    done = subprocess.run([str(python), "-c", DRIVERS[peer], str(calls), json.dumps(LLAMA)],
                          capture_output=True, text=True, timeout=1200, check=False)
    lines = [x for x in done.stdout.splitlines() if x.startswith("{")]
    if done.returncode != 0 or not lines:
        return {"skipped": f"driver failed: {done.stderr.strip()[-400:]}"}
    r = json.loads(lines[-1])
    r["configs_per_s"] = r["calls"] / r["wall_s"]
    r["configs_per_cpu_s"] = r["calls"] / r["cpu_s"]
    return r


def bench_accelsim(calls: int) -> dict:
    sys.path.insert(0, str(ROOT))
    from accelsim import Workload, simulate
    first = simulate("llama-3.1-8b", "h100-sxm", Workload(phase="decode", batch=1, context=1024)).latency_s
    jobs = [Workload(phase="decode", batch=1 + i % 16, context=1024 + 128 * (i % 8)) for i in range(calls)]
    t, c = time.perf_counter(), time.process_time()
    for w in jobs:
        simulate("llama-3.1-8b", "h100-sxm", w)
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    return {"calls": calls, "wall_s": wall, "cpu_s": cpu, "configs_per_s": calls / wall,
            "configs_per_cpu_s": calls / cpu, "first_latency_as_reported": first}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--calls", type=int, default=200)
    args = ap.parse_args()
    results: dict = {"job": "Llama-3.1-8B decode, one H100, bf16, batch 1..16, context 1024..1920",
                     "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                                 "load_average_at_start": os.getloadavg()[0]}}
    results["accelsim"] = bench_accelsim(args.calls)
    for peer in DRIVERS:
        print(f"-- {peer}", flush=True)
        results[peer] = bench_peer(peer, args.calls)
        r = results[peer]
        if "configs_per_cpu_s" in r:
            r["accelsim_cpu_rate_ratio"] = results["accelsim"]["configs_per_cpu_s"] / r["configs_per_cpu_s"]
    results["machine"]["load_average_at_end"] = os.getloadavg()[0]
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
