"""Disaggregated serving validation: InferenceX's disaggregated rows of ``measured_2025.csv``
replayed through ``serve --disagg`` (``accelsim.sim.disagg``), whole runs, not one step.

Each setup (hardware, chips, parallelism string, precision, framework, concurrency, ISL/OSL) has
four rows: total and output throughput per GPU, median interactivity (1/TPOT) and median TTFT.
Its parallelism string (``"disagg: prefill 6x(TP2 EP2 DP-attn)=12; decode 1x(TP8 EP8 DP-attn)=8"``)
is read into the two pools: ``NxLAYOUT=CHIPS`` is N replicas of the layout; ``TPn`` with
``DP-attn`` is n attention data-parallel ranks of one tensor-parallel chip each (how points.yaml
reads InferenceX's DeepSeek layouts), without it n-way tensor parallelism; ``EPn`` splits the
experts n ways.  A setup is skipped, with its reason, when a pool's layout is not stated, when
it runs MTP speculative decoding (``serve --spec-decode`` is issue 16c's and not on this branch)
or when one replica spans two 8-GPU NVLink nodes (the inter-node part of its collectives is not
modelled).

Nothing is fitted here: every chip constant comes from the family calibration of issue 17
(Blackwell fitted on aggregated B200 rows, Instinct on aggregated MI355X rows), so every
disaggregated row is held out, and the split is written down by chip in ``SPLIT`` before any of
these runs was made.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from accelsim.config import loader
from accelsim.errors import AccelsimError
from accelsim.sim import disagg
from accelsim.sim.disagg import DisaggResult, DisaggSpec, PoolSpec
from accelsim.sim.load import Load
from accelsim.validate.points import VALIDATION_DIR

DEFAULT_FILE = VALIDATION_DIR / "measured_2025.csv"
# InferenceX's client sends ten prompts per concurrent client (``--num-prompts $((CONC * 10))``
# in the InferenceMAX benchmark recipe: benchmark_serving.py with --max-concurrency CONC).
REQUESTS_PER_CLIENT = 10

# Names in the measurement file -> accelsim's.  DeepSeek-R1-0528 is the DeepSeek-V3 architecture
# (deepseek-ai/DeepSeek-R1 config.json: DeepseekV3ForCausalLM).
MODELS = {"DeepSeek-R1-0528": "deepseek-v3"}
HARDWARE = {"B300": "b300", "MI355X": "mi355x", "B200": "b200", "H100": "h100-sxm"}
# InferenceX's FP4 DeepSeek checkpoints quantise the weights *and activations* of the linear
# layers to FP4 (source: Hugging Face model cards of nvidia/DeepSeek-R1-0528-FP4, NVFP4 by
# TensorRT Model Optimizer, and amd/DeepSeek-R1-0528-MXFP4, MXFP4 by AMD Quark), KV in FP8; the
# FP8 runs use DeepSeek's own FP8 weights.  (validation/points.yaml costs the same rows' decode
# with FP8 activations; decode barely depends on it, prefill does.)
FP4 = {"b300": "nvfp4", "b200": "nvfp4", "mi355x": "mxfp4"}
# The runtime preset whose scheduler and KV settings stand in for the framework's (runtimes/).
FRAMEWORKS = {"Dynamo + TensorRT-LLM": "tensorrt-llm", "Dynamo + TensorRT-LLM (MTP)": "tensorrt-llm",
              "SGLang + MoRI (disagg)": "sglang", "Dynamo + SGLang": "sglang"}
# Written down by chip before any run (nothing is fitted in this module): all held out.
SPLIT = {"b300": "holdout", "mi355x": "holdout", "b200": "holdout", "h100-sxm": "holdout"}
# InferenceX draws random lengths over 80-100 % of the nominal ISL/OSL (random range ratio 0.8).
LENGTH_SPREAD = 0.8
NODE_GPUS = 8  # one HGX / MI355X node: the NVLink / Infinity Fabric domain in the configs
METRICS = {"total throughput per GPU (input+output)": "total_per_gpu",
           "output throughput per GPU": "output_per_gpu",
           "median interactivity (1/TPOT)": "tpot", "median TTFT": "ttft"}

_POOL = re.compile(r"(prefill|decode)\s+(\d+)x\(([^)]*)\)=(\d+)")


@dataclass(frozen=True)
class Setup:
    """One measured disaggregated run: its four rows (1-based data row numbers) and values."""

    hardware: str
    chips: int
    parallelism: str
    model: str
    precision: str
    framework: str
    concurrency: int
    input_len: int
    output_len: int
    rows: dict[str, int]
    measured: dict[str, float]

    @property
    def hw(self) -> str:
        return HARDWARE.get(self.hardware, "")


def _layout(role: str, replicas: int, text: str, chips: int, hw: str) -> PoolSpec:
    terms = dict(re.findall(r"(TP|EP)(\d+)", text))
    width = int(terms.get("TP", "1"))
    ep = int(terms["EP"]) if "EP" in terms else None
    if "DP-attn" in text:  # attention data parallel over the TP ranks, one chip each
        return PoolSpec(role, hw, chips, tp=None, ep=ep, dp=width if width > 1 else None)
    return PoolSpec(role, hw, chips, tp=width, ep=ep)


def pools(setup: Setup) -> DisaggSpec | str:
    """The two pools of ``setup``, or why it cannot be replayed."""
    if "MTP" in setup.parallelism or "MTP" in setup.framework:
        return ("MTP speculative decoding: `serve --spec-decode` (issue 16c) is not on this branch, "
                "and the rows state neither K nor the acceptance rate")
    found = {m.group(1): m for m in _POOL.finditer(setup.parallelism)}
    if set(found) != {"prefill", "decode"}:
        return "a pool's per-replica layout is not stated (only its chip count)"
    specs = {}
    for role, m in found.items():
        replicas, inner, chips = int(m.group(2)), m.group(3), int(m.group(4))
        spec = _layout(role, replicas, inner, chips, setup.hw)
        per = spec.parallelism.chips if spec.parallelism is not None else 1
        if per * replicas != chips:
            return f"{role}: {replicas} x {per} chips is not the stated {chips}"
        if per > NODE_GPUS:
            return (f"{role} replicas of {per} GPUs span two {NODE_GPUS}-GPU nodes: the inter-node part "
                    f"of their collectives is not modelled")
        specs[role] = spec
    return DisaggSpec(specs["prefill"], specs["decode"])


def setups(rows: list[dict[str, str]]) -> list[Setup]:
    """The disaggregated setups among ``rows`` (a measured_2025.csv), four metrics each."""
    grouped: dict[tuple[str, ...], dict[str, tuple[int, float]]] = {}
    firsts: dict[tuple[str, ...], dict[str, str]] = {}
    for number, row in enumerate(rows, start=1):
        if not row["parallelism"].startswith("disagg:") or row["metric"] not in METRICS:
            continue
        key = tuple(row[c] for c in ("hardware", "chips", "parallelism", "model", "precision", "framework",
                                     "batch_or_concurrency", "input_len", "output_len"))
        firsts.setdefault(key, row)
        grouped.setdefault(key, {})[METRICS[row["metric"]]] = (number, float(row["value"]))
    return [Setup(hardware=r["hardware"], chips=int(r["chips"]), parallelism=r["parallelism"], model=r["model"],
                  precision=r["precision"], framework=r["framework"],
                  concurrency=int(r["batch_or_concurrency"].split()[-1]), input_len=int(r["input_len"]),
                  output_len=int(r["output_len"]), rows={m: v[0] for m, v in grouped[key].items()},
                  measured={m: v[1] for m, v in grouped[key].items()})
            for key, r in firsts.items()]


def load_of(setup: Setup, requests_per_client: int) -> Load:
    """InferenceX's closed loop: ``concurrency`` clients, lengths over 80-100 % of nominal."""
    return Load("concurrency", float(setup.concurrency), requests_per_client * setup.concurrency,
                setup.input_len, setup.output_len, spread=LENGTH_SPREAD)


def dtypes_of(setup: Setup) -> dict[str, str]:
    fmt = FP4.get(setup.hw, "nvfp4") if setup.precision == "fp4" else "fp8"
    return {"weight_dtype": fmt, "act_dtype": fmt, "kv_dtype": "fp8"}


def predicted(run: DisaggResult) -> dict[str, float]:
    """The four measured figures from a run, each in the row's unit (tok/s/GPU, tok/s/user, s)."""
    r = run.result
    tokens = sum(q.prompt + q.output for q in r.requests)
    # InferenceX divides total throughput by all GPUs and output throughput by the decode GPUs:
    # its rows' output / total ratio is (decode GPUs / all GPUs) x OSL / (ISL + OSL) in every setup
    # (e.g. 3870.75 x 8 / (13931.7 x 20) = 0.111 = 922 / (7373 + 922) at the mean lengths).
    return {"total_per_gpu": tokens / r.makespan_s / r.chips,
            "output_per_gpu": r.throughput_tokens_per_s / run.pools[1].chips,
            "tpot": r.tokens_per_s_per_user, "ttft": r.percentiles("ttft_s")["p50"]}


def errors(measured: dict[str, float], pred: dict[str, float]) -> dict[str, float]:
    """Predicted / measured - 1 per metric; TPOT from interactivity (1/TPOT), so its error is
    measured interactivity / predicted interactivity - 1."""
    out = {}
    for metric, value in measured.items():
        if metric not in pred or value <= 0 or pred[metric] <= 0:
            continue
        out[metric] = value / pred[metric] - 1 if metric == "tpot" else pred[metric] / value - 1
    return out


def median_abs(values: list[float]) -> float:
    if not values:
        raise AccelsimError("no disaggregated setup could be replayed")
    return float(np.median(np.abs(values)))


def replay(all_setups: list[Setup], run: Callable[[Setup, DisaggSpec], DisaggResult]) -> list[dict]:
    """Each setup replayed by ``run`` (the API builds the pools and serves) or skipped with its
    reason; one record per setup."""
    records = []
    for setup in all_setups:
        spec = pools(setup)
        base = {"hardware": setup.hardware, "chips": setup.chips, "parallelism": setup.parallelism,
                "precision": setup.precision, "framework": setup.framework,
                "concurrency": setup.concurrency, "rows": setup.rows, "measured": setup.measured,
                "split": SPLIT.get(setup.hw, "holdout")}
        if isinstance(spec, str):
            records.append({**base, "skipped": spec})
            continue
        result = run(setup, spec)
        pred = predicted(result)
        records.append({**base, "disagg": spec.text(), "predicted": pred,
                        "errors": errors(setup.measured, pred), "bound": result.bound,
                        "balanced_prefill_per_decode_chip": result.balanced_ratio})
    return records


def replay_file(path: str | Path | None = None, requests_per_client: int = REQUESTS_PER_CLIENT,
                hardware: str | None = None) -> list[dict]:
    """The disaggregated setups of ``path`` (default: validation/measured_2025.csv, a verbatim
    copy of the refdata table) replayed through ``serve --disagg``, one record per setup.  Each
    runs a closed loop of its concurrency under the runtime preset standing in for its
    framework, with the engine's batch limit at the concurrency (the rows do not state it; a
    lower one would keep clients waiting that the measured TTFTs do not show)."""
    from accelsim import api

    rows = loader.read_csv(path or DEFAULT_FILE, "measurements")

    def run(setup: Setup, spec: DisaggSpec) -> DisaggResult:
        preset = api.load_runtime(FRAMEWORKS[setup.framework])
        dtypes = dtypes_of(setup)
        system = api.disagg_system(MODELS[setup.model], spec, runtime=preset, weight_dtype=dtypes["weight_dtype"],
                                   act_dtype=dtypes["act_dtype"], kv_dtype=dtypes["kv_dtype"])
        config = preset.serve_config(max_batch=setup.concurrency)
        return disagg.run(system, config, load_of(setup, requests_per_client))

    chosen = [s for s in setups(rows) if hardware is None or s.hardware == hardware]
    return replay(chosen, run)


def summary(records: list[dict]) -> dict[str, float]:
    """Median |error| per compared metric over the replayed setups."""
    out = {}
    for metric in ("tpot", "output_per_gpu", "total_per_gpu", "ttft"):
        values = [r["errors"][metric] for r in records if "errors" in r and metric in r["errors"]]
        if values:
            out[metric] = median_abs(values)
    return out


def markdown(records: list[dict]) -> str:
    """The table docs/validation.md shows: one line per setup, errors in percent."""
    lines = ["| setup | pools (accelsim) | split | TPOT | output tok/s/GPU | total tok/s/GPU | TTFT | bound | balanced P:D |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in records:
        name = f"{r['hardware']} {r['chips']} GPUs, {r['precision']}, {r['framework']}, conc {r['concurrency']}"
        if "skipped" in r:
            lines.append(f"| {name} | skipped: {r['skipped']} | | | | | | | |")
            continue
        e, m, p = r["errors"], r["measured"], r["predicted"]

        def cell(metric: str, unit: str) -> str:
            shown = [f"{v:,.0f}" if v >= 100 else f"{v:.4g}" for v in (p[metric], m[metric])]
            return f"{shown[0]} vs {shown[1]}{' ' + unit if unit else ''} ({100 * e[metric]:+.1f} %)"

        lines.append(f"| {name} | `{r['disagg']}` | {r['split']} | {cell('tpot', 'tok/s/user')} | "
                     f"{cell('output_per_gpu', '')} | {cell('total_per_gpu', '')} | {cell('ttft', 's')} | "
                     f"{r['bound']} | {r['balanced_prefill_per_decode_chip']:.2f} |")
    return "\n".join(lines)
