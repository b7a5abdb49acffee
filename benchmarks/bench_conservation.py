"""Conservation laws over the full matrix (issue 14): every catalogue model under every layout
of up to 8 chips that fits a bundled chip, MoE expert bytes on every bundled chip, tensor
parallelism against one GPU, and the DeepSeek-V3 / Mixtral acceptance numbers.  Writes
benchmarks/results/conservation.json and exits 1 on any violation.

    python benchmarks/bench_conservation.py                 # everything (a few minutes)
    python benchmarks/bench_conservation.py --only graph    # some sections: graph experts tp acceptance

The checking functions live once, in tests/test_conservation.py (the suite runs a fixed-seed
sample of this matrix); this script imports them from there.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import traceback
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "results" / "conservation.json"
sys.path.insert(0, str(HERE.parent / "tests"))

import test_conservation as law  # the one copy of the checks

from accelsim.errors import AccelsimError, ConfigError
from accelsim.workload import Workload

GRAPH_WORKLOADS = (law.GRAPH_WORKLOAD, Workload("prefill", batch=8, prompt=256))
EXPERT_BATCHES = (1, 4, 32)
EXPERT_MODELS = {  # name -> (builder, weight dtype on chips with fp8, weight dtype elsewhere)
    "mixtral-8x7b": (lambda: law.catalogue("mixtral-8x7b"), "fp8", "int8"),
    "jamba-v0.1": (lambda: law.catalogue("jamba-v0.1"), "fp8", "int8"),
    "deepseek-v3-5l": (law.short_deepseek, "fp8", "int8"),
    "tiny-moe": (law.tiny_moe, "fp8", "int8"),
}
FP8_CHIPS = {"h100-sxm", "h200", "b200", "mi300x"}
TP_HW = ("h100-sxm", "h200")


def _not_applicable(err: Exception) -> bool:
    """Refusals (does not fit, layout not taken) are n/a; broken configuration is a failure."""
    return isinstance(err, AccelsimError) and not isinstance(err, ConfigError)


def _error_row(err: Exception) -> dict:
    return {"status": "error", "violations": [f"{type(err).__name__}: {err}"],
            "trace": traceback.format_exc(limit=-3)}


def graph_section() -> list[dict]:
    rows = []
    for wl in GRAPH_WORKLOADS:
        for family, cases in law.family_cases(wl).items():
            for name, layout in cases:
                row = {"phase": wl.phase, "family": family, "model": name, "layout": layout.label,
                       "chips": layout.chips}
                try:
                    found = law.run_conservation(name, layout, wl)
                except Exception as err:  # noqa: BLE001 - every crash is a finding
                    rows.append({**row, **_error_row(err)})
                    continue
                if found is None:
                    rows.append({**row, "status": "n/a"})
                    continue
                bad = found.violations()
                rows.append({**row, "status": "violation" if bad else "ok",
                             "flops_ratio": 1 + found.flops_error,
                             "flops_raw_ratio": found.flops_raw / found.flops_unsharded,
                             "weight_ratio": 1 + found.weight_error,
                             "weight_raw_ratio": (found.weight_raw / found.weight_unsharded
                                                  if found.weight_unsharded else 1.0),
                             "per_chip_gb": found.per_chip_bytes / 1e9, "violations": bad})
    return rows


def expert_section() -> list[dict]:
    rows = []
    chips = [hw for hw in law.HW_CONFIGS if not hw.startswith("hardwired")] + ["hardwired"]
    for hw in chips:
        for model, (build, fp8, other) in EXPERT_MODELS.items():
            spec = build()
            dtype = None if hw == "hardwired" else (fp8 if hw in FP8_CHIPS else other)
            for batch in EXPERT_BATCHES:
                row = {"hw": hw, "model": model, "weight_dtype": dtype, "batch": batch}
                try:
                    found = law.expert_bytes(spec, law.expert_chip(hw, spec),
                                             Workload("decode", batch=batch, context=512), weight_dtype=dtype)
                except Exception as err:  # noqa: BLE001
                    rows.append({**row, "status": "n/a", "reason": str(err).splitlines()[0][:200]}
                                if _not_applicable(err) else {**row, **_error_row(err)})
                    continue
                bad = found.violations()
                rows.append({**row, "status": "violation" if bad else "ok", "level": found.level,
                             "charged_bytes": found.charged, "expected_bytes": found.expected,
                             "ratio": found.ratio, "distinct_experts": found.distinct, "violations": bad})
    return rows


def tp_section() -> list[dict]:
    rows = []
    for name in (*law.MODELS, "deepseek-v3-5l"):
        for dtype in (None, "fp8"):
            for hw in TP_HW:
                for k in (2, 4, 8):
                    row = {"model": name, "weight_dtype": dtype, "hw": hw, "tp": k}
                    try:
                        found = law.tp_check(name, dtype, hw, k)
                    except Exception as err:  # noqa: BLE001
                        rows.append({**row, **_error_row(err)})
                        continue
                    if found is None:
                        rows.append({**row, "status": "n/a"})
                        continue
                    bad = law.tp_violations(name, hw, k, found)
                    rows.append({**row, "status": "violation" if bad else "ok", "tp1_s": found.one_s,
                                 "tpk_s": found.many_s, "collective_s": found.collective_s,
                                 "extra_fixed_s": found.extra_fixed_s,
                                 "over_allowed": found.many_s / found.allowed_s, "violations": bad})
    return rows


def acceptance_section() -> list[dict]:
    rows = []
    for layout_name in law.DSV3_LAYOUTS:
        row = {"check": f"deepseek-v3 h200 x8 fp8 batch-1 decode {layout_name}"}
        try:
            latency, bound, pp8 = law.dsv3_acceptance(layout_name)
        except Exception as err:  # noqa: BLE001
            rows.append({**row, **_error_row(err)})
            continue
        bad = []
        # The suite's bound (tests/test_conservation.py says why 3x is not a physical one); the
        # issue's 3x target is recorded beside it, met or not.
        if not bound <= latency <= law.DSV3_MAX_OVER_BOUND * bound:
            bad.append(f"{latency * 1e3:.4g} ms/token is x{latency / bound:.3g} its memory bound "
                       f"{bound * 1e3:.4g} ms (allowed 1x to {law.DSV3_MAX_OVER_BOUND:g}x)")
        if latency >= pp8:
            bad.append(f"{latency * 1e3:.4g} ms/token not faster than PP8 {pp8 * 1e3:.4g} ms")
        rows.append({**row, "status": "violation" if bad else "ok", "latency_s": latency,
                     "memory_bound_s": bound, "over_bound": latency / bound,
                     "issue_target_3x_met": latency <= 3 * bound, "pp8_latency_s": pp8,
                     "violations": bad})
    row = {"check": "mixtral-8x7b h200 fp8 batch-1 decode reads 2/8 of the expert weights"}
    try:
        found = law.expert_bytes(law.catalogue("mixtral-8x7b"), "h200",
                                 Workload("decode", batch=1, context=2048), weight_dtype="fp8")
        share = found.charged / (found.expected * 8 / 2)
        bad = [] if abs(share - 0.25) <= 0.0025 else [f"reads {share:.3f} of the expert weights"]
        rows.append({**row, "status": "violation" if bad else "ok", "share": share, "violations": bad})
    except Exception as err:  # noqa: BLE001
        rows.append({**row, **_error_row(err)})
    return rows


SECTIONS = {"graph": graph_section, "experts": expert_section, "tp": tp_section,
            "acceptance": acceptance_section}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", choices=list(SECTIONS), default=list(SECTIONS))
    args = parser.parse_args()
    payload: dict = {"machine": {"python": platform.python_version(),
                                 "cpu": platform.processor() or platform.machine()},
                     "new_layouts": law.NEW_LAYOUTS, "sections": {}}
    failures = []
    for name in args.only:
        start = time.perf_counter()
        rows = SECTIONS[name]()
        wall = time.perf_counter() - start
        counts = Counter(r["status"] for r in rows)
        payload["sections"][name] = {"wall_s": wall, "counts": dict(counts), "rows": rows}
        print(f"{name:11s} {wall:7.1f} s  " + "  ".join(f"{k} {v}" for k, v in sorted(counts.items())),
              flush=True)
        failures += [(name, r) for r in rows if r["status"] in ("violation", "error")]
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(payload, indent=2, default=str), encoding="utf-8")
    for section, row in failures:
        where = " ".join(str(row[k]) for k in row if k not in ("status", "violations", "trace")
                         and not isinstance(row[k], float))
        print(f"  {section}: {where}: {row['violations'][0][:300]}")
    print(f"{len(failures)} violation(s); results in {OUT.relative_to(HERE.parent)}")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
