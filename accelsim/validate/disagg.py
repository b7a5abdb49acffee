"""Disaggregated serving validation: InferenceX's disaggregated rows of ``measured_2025.csv``
replayed through ``serve --disagg`` (``accelsim.sim.disagg``), whole runs, not one step.

Each setup (hardware, chips, parallelism string, precision, framework, concurrency, ISL/OSL) has
four rows: total and output throughput per GPU, median interactivity (1/TPOT) and median TTFT.
Its parallelism string (``"disagg: prefill 6x(TP2 EP2 DP-attn)=12; decode 1x(TP8 EP8 DP-attn)=8"``)
is read into the two pools: ``NxLAYOUT=CHIPS`` is N replicas of the layout, read as every
InferenceX layout cell is (``serving.parse_layout``).  Models, chips, formats, runtimes, the
client and metric names come from ``validation/serving.yaml``'s InferenceX source, shared with
the aggregated replay.  Where the run's own recipe (the InferenceX config's engine file) is
known, ``RECIPES`` states its MTP draft length and its decode pool's batch limit; MTP runs
accept draft tokens as TensorRT-LLM measured for DeepSeek-R1 at that draft length
(``MTP_ACCEPTED_TOKENS``).  Neither is fitted to these rows.  A setup is skipped,
with its reason, when a pool's layout is not stated or when one replica spans two 8-GPU NVLink
nodes (the inter-node part of its collectives is not modelled).

Nothing is fitted here: every chip constant comes from the family calibration of issue 17
(Blackwell fitted on aggregated B200 rows, Instinct on aggregated MI355X rows), so every
disaggregated row is held out, and the split is written down by chip in ``SPLIT`` before any of
these runs was made.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from accelsim.config import loader
from accelsim.errors import AccelsimError, ConfigError
from accelsim.sim import disagg
from accelsim.sim.disagg import DisaggResult, DisaggSpec, PoolSpec
from accelsim.sim.load import Load
from accelsim.sim.speculative import MTP, SpecDecode, accept_for_tokens, accepted_tokens
from accelsim.validate import serving
from accelsim.validate.points import VALIDATION_DIR

DEFAULT_FILE = VALIDATION_DIR / "measured_2025.csv"
# Written down by chip before any run (nothing is fitted in this module): all held out.
SPLIT = {"b300": "holdout", "mi355x": "holdout", "b200": "holdout", "h100-sxm": "holdout"}
NODE_GPUS = 8  # one HGX / MI355X node: the NVLink / Infinity Fabric domain in the configs
# Mean tokens one verify step commits (the acceptance length, drafts accepted + the target's own)
# for DeepSeek-R1 decoding with K autoregressive MTP draft tokens in TensorRT-LLM (its default
# "MTP Eagle" path: the checkpoint's one MTP module run K times), strict acceptance.
# source: NVIDIA TensorRT-LLM tech blog 1, "Pushing Latency Boundaries: Optimizing DeepSeek-R1
# Performance on NVIDIA B200 GPUs" (docs/source/blogs/tech_blog/blog1_*.md), table "Autoregressive
# MTP Layers", column "Acceptance Rate" (a length: 1.00 without MTP): MTP 1 1.92, MTP 2 2.58,
# MTP 3 2.82, MTP 4 2.99, MTP 5 3.01 (8 x B200, ISL 1k / OSL 2k).  Cross-check for K = 1: the
# DeepSeek-V3 report (arXiv 2412.19437, Sec. 5.4.3) gives 85-90 % for the MTP token (1.85-1.90).
MTP_ACCEPTED_TOKENS = {1: 1.92, 2: 2.58, 3: 2.82, 4: 2.99, 5: 3.01}
# Without a known recipe an MTP run drafts one token: DeepSeek-V3/R1 ship one MTP module.
DEFAULT_MTP_K = 1


@dataclass(frozen=True)
class Recipe:
    """What a measured run's engine recipe states that the rows do not: the MTP draft length
    (TensorRT-LLM's ``speculative_config.num_nextn_predict_layers``) and the decode workers'
    ``max_batch_size`` (per attention-DP rank).  Matched to a setup by hardware, precision,
    concurrency and the parallelism string; None: the recipe does not set it."""

    hardware: str
    precision: str
    concurrency: int
    parallelism: str
    draft_k: int | None
    decode_max_batch: int | None
    source: str


# Written down from the InferenceX configs at the rows' dates, not fitted: a recipe only for a
# setup whose engine file was read.
RECIPES: tuple[Recipe, ...] = (
    Recipe("B300", "fp4", 52, "disagg: prefill 1x(TP2 EP2 DP-attn)=2; decode 4x(TP4 EP4)=16; MTP",
           draft_k=3, decode_max_batch=8,
           source="github.com/SemiAnalysisAI/InferenceX @458c6af7 (2026-01-29) .github/configs/nvidia-master.yaml, "
                  "dsr1-fp4-b300-dynamo-trt, isl 8192 / osl 1024, conc-list [52]: CONFIG_FILE=recipes/trtllm/"
                  "b300-fp4/8k1k/mtp/ctx1_gen4_tep4_batch8_eplb0_mtp3.yaml (srt-slurm, branch "
                  "sa-submission-q1-2026; copied into InferenceX @80d98084 as benchmarks/multi_node/"
                  "srt-slurm-recipes/trtllm/b300-fp4/8k1k/mtp/): decode tensor_parallel_size 4, "
                  "moe_expert_parallel_size 4, enable_attention_dp false, max_batch_size 8, max_num_tokens 32, "
                  "speculative_config {decoding_type: MTP, num_nextn_predict_layers: 3}"),
    Recipe("B300", "fp4", 1093, "disagg: prefill 6x(TP2 EP2 DP-attn)=12; decode 1x(TP8 EP8 DP-attn)=8",
           draft_k=None, decode_max_batch=128,
           source="github.com/SemiAnalysisAI/InferenceX @458c6af7 (2026-01-29) .github/configs/nvidia-master.yaml, "
                  "dsr1-fp4-b300-dynamo-trt, isl 8192 / osl 1024, conc-list [1093]: CONFIG_FILE=recipes/trtllm/"
                  "b300-fp4/8k1k/stp/ctx6_gen1_dep8_batch128_eplb0_mtp0.yaml (in InferenceX @80d98084 under "
                  "benchmarks/multi_node/srt-slurm-recipes/trtllm/): decode tensor_parallel_size 8, "
                  "moe_expert_parallel_size 8, enable_attention_dp true, max_batch_size 128, no speculative_config"),
    Recipe("B300", "fp8", 3072, "disagg: prefill 7x(TP4 DP-attn)=28; decode 1x(TP8 EP8 DP-attn)=8",
           draft_k=None, decode_max_batch=384,
           source="github.com/SemiAnalysisAI/InferenceX @ee032b37 (2026-02-13) .github/configs/nvidia-master.yaml, "
                  "dsr1-fp8-b300-dynamo-trt, isl 8192 / osl 1024, conc-list [3072]: CONFIG_FILE=recipes/trtllm/"
                  "b300-fp8/8k1k/stp/ctx7_gen1_dep8_batch384_eplb0_mtp0_3072.yaml (in InferenceX @80d98084 under "
                  "benchmarks/multi_node/srt-slurm-recipes/trtllm/): decode tensor_parallel_size 8, "
                  "moe_expert_parallel_size 8, enable_attention_dp true, max_batch_size 384, no speculative_config"),
)

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
    hw: str  # accelsim's name (serving.yaml ``hardware``), "" when it has none

    @property
    def mtp(self) -> bool:
        return "MTP" in self.parallelism or "MTP" in self.framework


def recipe_of(setup: Setup) -> Recipe | None:
    """The stated recipe of ``setup`` (``RECIPES``), or None."""
    for r in RECIPES:
        if (r.hardware, r.precision, r.concurrency, r.parallelism) == (
                setup.hardware, setup.precision, setup.concurrency, setup.parallelism):
            return r
    return None


def spec_decode_of(setup: Setup) -> SpecDecode | None:
    """How ``setup`` decodes: plain, or MTP with the recipe's draft length (else one token) at
    the acceptance TensorRT-LLM measured for that length (``MTP_ACCEPTED_TOKENS``, turned into a
    per-token rate by inverting Leviathan's formula, so the serving loop commits exactly that
    mean length per verify step)."""
    if not setup.mtp:
        return None
    recipe = recipe_of(setup)
    k = recipe.draft_k if recipe is not None and recipe.draft_k is not None else DEFAULT_MTP_K
    if k not in MTP_ACCEPTED_TOKENS:
        raise ConfigError(f"MTP draft length {k} has no measured acceptance (known: "
                          f"{', '.join(map(str, sorted(MTP_ACCEPTED_TOKENS)))})")
    return SpecDecode(MTP, k, accept_for_tokens(MTP_ACCEPTED_TOKENS[k], k))


def _layout(role: str, replicas: int, text: str, chips: int, hw: str) -> PoolSpec:
    """One pool of ``replicas`` x LAYOUT = ``chips``, the layout read as every InferenceX cell is
    (``serving.parse_layout``: "DP-attn" puts the TP count on attention data-parallel ranks)."""
    if chips % replicas:
        raise ConfigError(f"{role}: {chips} chips is not {replicas} whole replicas")
    tp, ep, dp = serving.parse_layout(text, chips // replicas, f"{role} pool")
    return PoolSpec(role, hw, chips, tp=tp if tp > 1 else None, ep=ep if ep > 1 else None,
                    dp=dp if dp > 1 else None)


def pools(setup: Setup) -> DisaggSpec | str:
    """The two pools of ``setup``, or why it cannot be replayed."""
    found = {m.group(1): m for m in _POOL.finditer(setup.parallelism)}
    if set(found) != {"prefill", "decode"}:
        return "a pool's per-replica layout is not stated (only its chip count)"
    specs = {}
    for role, m in found.items():
        replicas, inner, chips = int(m.group(2)), m.group(3), int(m.group(4))
        try:
            spec = _layout(role, replicas, inner, chips, setup.hw)
        except ConfigError as err:
            return err.one_line()
        per = chips // replicas
        if per > NODE_GPUS:
            return (f"{role} replicas of {per} GPUs span two {NODE_GPUS}-GPU nodes: the inter-node part "
                    f"of their collectives is not modelled")
        specs[role] = spec
    recipe = recipe_of(setup)
    decode = specs["decode"]
    if recipe is not None and recipe.decode_max_batch is not None:
        decode = replace(decode, max_batch=recipe.decode_max_batch)
    return DisaggSpec(specs["prefill"], decode)


def setups(rows: list[dict[str, str]], path: Path = serving.DEFAULT_FILE) -> list[Setup]:
    """The disaggregated setups among ``rows`` (a measured_2025.csv), their metrics named as the
    InferenceX source of ``path`` (serving.yaml) maps them."""
    source, names = serving.inferencex(path)
    grouped: dict[tuple[str, ...], dict[str, tuple[int, float]]] = {}
    firsts: dict[tuple[str, ...], dict[str, str]] = {}
    for number, row in enumerate(rows, start=1):
        if not row["parallelism"].startswith("disagg:") or row["metric"] not in source.metrics:
            continue
        key = tuple(row[c] for c in ("hardware", "chips", "parallelism", "model", "precision", "framework",
                                     "batch_or_concurrency", "input_len", "output_len"))
        firsts.setdefault(key, row)
        grouped.setdefault(key, {})[source.metrics[row["metric"]]] = (number, float(row["value"]))
    return [Setup(hardware=r["hardware"], chips=int(r["chips"]), parallelism=r["parallelism"], model=r["model"],
                  precision=r["precision"], framework=r["framework"],
                  concurrency=int(r["batch_or_concurrency"].split()[-1]), input_len=int(r["input_len"]),
                  output_len=int(r["output_len"]), rows={m: v[0] for m, v in grouped[key].items()},
                  measured={m: v[1] for m, v in grouped[key].items()}, hw=names.hardware.get(r["hardware"], ""))
            for key, r in firsts.items()]


def load_of(setup: Setup, path: Path = serving.DEFAULT_FILE) -> Load:
    """InferenceX's closed loop as its client runs it (serving.yaml: requests per client,
    length spread)."""
    source, _ = serving.inferencex(path)
    return serving.client_load(source, setup.concurrency, setup.input_len, setup.output_len)


def dtypes_of(setup: Setup, path: Path = serving.DEFAULT_FILE) -> serving.Dtypes:
    source, _ = serving.inferencex(path)
    return serving.precision_dtypes(source, setup.precision, setup.hardware, setup.parallelism)


def predicted(run: DisaggResult) -> dict[str, float]:
    """The measured figures from a run, each in the row's unit (tok/s/GPU, tok/s/user, s), as
    ``serving.measure`` reads a run, except output throughput per GPU: InferenceX divides it by
    the **decode** GPUs for a disaggregated run (its rows' output / total ratio is (decode GPUs /
    all GPUs) x OSL / (ISL + OSL) in every setup, e.g. 3870.75 x 8 / (13931.7 x 20) = 0.111 =
    922 / (7373 + 922) at the mean lengths)."""
    r = run.result
    out = {m: serving.measure(r, m) for m in ("total_throughput_per_chip", "interactivity_p50", "ttft_p50")}
    return out | {"output_throughput_per_chip": run.throughput_per_decode_chip}


def errors(measured: dict[str, float], pred: dict[str, float]) -> dict[str, float]:
    """``serving.error`` per metric both sides have (interactivity compared as TPOT)."""
    return {m: serving.error(m, pred[m], value) for m, value in measured.items()
            if m in pred and value > 0 and pred[m] > 0}


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
        sd = spec_decode_of(setup)
        decoding = None if sd is None else {"draft": sd.draft, "k": sd.k, "accept": sd.accept,
                                            "accepted_tokens_per_step": accepted_tokens(sd.accept, sd.k)}
        records.append({**base, "disagg": spec.text(), "spec_decode": decoding, "predicted": pred,
                        "errors": errors(setup.measured, pred), "bound": result.bound,
                        "balanced_prefill_per_decode_chip": result.summary()["disagg"]["balanced_prefill_per_decode_chip"]})
    return records


def replay_file(path: str | Path | None = None, hardware: str | None = None,
                serving_file: Path = serving.DEFAULT_FILE) -> list[dict]:
    """The disaggregated setups of ``path`` (default: validation/measured_2025.csv, a verbatim
    copy of the refdata table) replayed through ``serve --disagg``, one record per setup.  Each
    runs a closed loop of its concurrency under the runtime preset of its framework (serving.yaml's
    InferenceX source, which also names the models, chips, formats and the client) and
    ``serving.engine_config`` (a recipe's decode batch limit replaces it in that pool); MTP runs
    decode as ``spec_decode_of`` says."""
    from accelsim import api

    rows = loader.read_csv(path or DEFAULT_FILE, "measurements")
    source, names = serving.inferencex(serving_file)

    def run(setup: Setup, spec: DisaggSpec) -> DisaggResult:
        preset = api.load_runtime(source.runtimes[setup.framework])
        dtypes = dtypes_of(setup, serving_file)
        system = api.disagg_system(names.models[setup.model], spec, runtime=preset, weight_dtype=dtypes.weight,
                                   act_dtype=dtypes.act, kv_dtype=dtypes.kv, spec_decode=spec_decode_of(setup))
        config = serving.engine_config(preset, setup.concurrency)
        return disagg.run(system, config, load_of(setup, serving_file))

    chosen = [s for s in setups(rows, serving_file) if hardware is None or s.hardware == hardware]
    return replay(chosen, run)


def summary(records: list[dict]) -> dict[str, float]:
    """Median |error| per compared metric over the replayed setups."""
    out = {}
    for metric in ("interactivity_p50", "output_throughput_per_chip", "total_throughput_per_chip", "ttft_p50"):
        values = [r["errors"][metric] for r in records if "errors" in r and metric in r["errors"]]
        if values:
            out[metric] = median_abs(values)
    return out


def _ratio(value: float | None) -> str:
    return "decode never busy" if value is None else f"{value:.2f}"


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

        sd = r.get("spec_decode")
        decoding = "" if not sd else f" + {sd['draft']} K={sd['k']} ({sd['accepted_tokens_per_step']:.2f} tok/step)"
        lines.append(f"| {name} | `{r['disagg']}`{decoding} | {r['split']} | {cell('interactivity_p50', 'tok/s/user')} | "
                     f"{cell('output_throughput_per_chip', '')} | {cell('total_throughput_per_chip', '')} | "
                     f"{cell('ttft_p50', 's')} | "
                     f"{r['bound']} | {_ratio(r['balanced_prefill_per_decode_chip'])} |")
    return "\n".join(lines)
