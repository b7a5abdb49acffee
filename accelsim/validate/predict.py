"""What accelsim predicts for one validation point.

Static-batch throughput is integrated from steps: a static batch runs one prefill of ``batch``
prompts (which also yields each sequence's first token) and then ``output_len - 1`` decode steps,
step ``j`` attending to ``input_len + j - 1`` cached tokens.  Decode time is close to affine in
the context (attention grows linearly, everything else is fixed), so the step is simulated at a
few contexts spread over the range and the sum over every integer context is taken over the
piecewise-linear interpolation between them.

The serving runtime's per-request cost (``gpu.request_overhead``) is part of every measurement
that times a request end to end: a TTFT point pays it once, a static-batch run (one prefill and
its decode steps, timed as one request batch) once.  Single-kernel GEMM and stream points never
pay it.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np

from accelsim import hardware
from accelsim.api import simulate
from accelsim.errors import ConfigError
from accelsim.graph import Elementwise, MatMul, Tensor
from accelsim.hardware.spec import HardwareBase
from accelsim.model.spec import ModelSpec, load_model
from accelsim.pipeline import cost_alone
from accelsim.sim.runtime import RuntimePreset, on_hardware
from accelsim.transform import Parallelism
from accelsim.validate.points import VALIDATION_DIR, Catalogue, Point, Runtime
from accelsim.workload import Workload

DECODE_SAMPLES = 5

# BabelStream's default array: 2^25 doubles = 256 MiB (source: BabelStream README, `--arraysize`
# default 33554432).  accelsim has no fp64, so the same bytes are 2^26 fp32 elements.
STREAM_ELEMENTS = 2 ** 26
STREAM_DTYPE = "fp32"

# cuBLASLt FP8 GEMMs take fp8 A/B and write a 16-bit C (the Azure guide's benchmark does not
# say which; bf16 output is the common configuration).
GEMM_OUT_DTYPE = {"fp8": "bf16", "fp16": "fp16", "bf16": "bf16"}


@dataclass(frozen=True)
class Calibration:
    """The constants calibration fits per hardware config (the others stay as the YAML says).

    ``step_s`` is the per-step host overhead (``gpu.step_overhead``), ``request_s`` the
    per-request runtime overhead (``gpu.request_overhead``) and ``unit_s`` the fixed time of a
    wave of attention work units (``gpu.attention_unit_overhead``); kinds without them keep 0."""

    compute: float
    memory: float
    overhead_s: float
    step_s: float = 0.0
    request_s: float = 0.0
    unit_s: float = 0.0


# Which overhead each Calibration field sets, by the ``overhead_keys`` role of the backend.
_FIELD_OF = {"op": "overhead_s", "step": "step_s", "request": "request_s", "attention_unit": "unit_s"}


def _keys(hw: HardwareBase) -> dict[str, tuple[str, str]]:
    """Calibration field -> (spec section, key) of the overheads ``hw``'s kind calibrates."""
    keys = hardware.backend(hw).overhead_keys(hw)
    if "op" not in keys:
        raise ValueError(f"{hw.name}: kind '{hw.kind}' has no calibrated overhead")
    fields: dict[str, tuple[str, str]] = {}
    for role, dotted in keys.items():
        section, key = dotted.split(".", 1)
        fields[_FIELD_OF[role]] = (section, key)
    return fields


def has_attention_unit_overhead(hw: HardwareBase) -> bool:
    """Whether the kind charges a fixed time per wave of attention work units."""
    return "attention_unit" in hardware.backend(hw).overhead_keys(hw)


def has_request_overhead(hw: HardwareBase) -> bool:
    """Whether the kind charges a per-request runtime overhead (``gpu.request_overhead``)."""
    return "request" in hardware.backend(hw).overhead_keys(hw)


def request_overhead(hw: HardwareBase) -> float:
    """Seconds the serving runtime spends per request (``gpu.request_overhead``; 0 elsewhere)."""
    return hardware.backend(hw).request_overhead(hw)


def current_calibration(hw: HardwareBase) -> Calibration:
    overheads = {name: getattr(getattr(hw, section), key) for name, (section, key) in _keys(hw).items()}
    return Calibration(hw.efficiency.compute, hw.efficiency.memory, **overheads)


def calibrated(hw: HardwareBase, cal: Calibration) -> HardwareBase:
    """A copy of ``hw`` with the efficiency constants and the per-op, per-step and per-request
    overheads replaced (each kind sets those it has: ``overhead_keys``)."""
    keys = _keys(hw)
    if cal.request_s and "request_s" not in keys:
        raise ValueError(f"{hw.name}: kind '{hw.kind}' has no per-request overhead to set")
    if cal.unit_s and "unit_s" not in keys:
        raise ValueError(f"{hw.name}: kind '{hw.kind}' has no attention unit overhead to set")
    sections: dict[str, dict[str, float]] = {}
    for name, (section, key) in keys.items():
        sections.setdefault(section, {})[key] = getattr(cal, name)
    return hw.model_copy(update={
        "efficiency": hw.efficiency.model_copy(update={"compute": cal.compute, "memory": cal.memory}),
        **{section: getattr(hw, section).model_copy(update=update) for section, update in sections.items()},
    })


def under_runtime(hw: HardwareBase, runtime: Runtime | RuntimePreset | None) -> HardwareBase:
    """``hw`` with the kernel-library settings of the software that measured a point (a bundled
    serving preset brings its host overheads too: ``accelsim.sim.runtime.on_hardware``)."""
    if runtime is None:
        return hw
    if isinstance(runtime, RuntimePreset):
        return on_hardware(hw, runtime)
    if "gpu" not in type(hw).model_fields:  # the runtime's settings are a section of the spec
        raise ConfigError(f"{hw.name}: a runtime's settings name gpu keys, but its kind is '{hw.kind}'")
    settings = runtime.gpu.model_dump(exclude_none=True)
    section = getattr(hw, "gpu")  # the section just checked for
    return hw.model_copy(update={"gpu": section.model_copy(update=settings)})


@cache
def model_for(name: str) -> ModelSpec:
    """A bundled model name, or a path relative to the repository (validation/models/...)."""
    if name.endswith(".yaml"):
        return load_model(str(VALIDATION_DIR.parent / name))
    return load_model(name)


def _step_latency(point: Point, hw: HardwareBase, workload: Workload) -> float:
    parallelism = (Parallelism(tp=point.chips // point.dp_attn, dp=point.dp_attn, ep=point.ep,
                               tp_x=point.tp_x, attention=point.attention)
                   if point.chips > 1 else None)
    d = point.dtype
    # A measured point ran its sequence length on real hardware (GPT-J's 2,048-token prompt plus
    # 128 outputs passes its 2,048 max_context): cost what was measured, never refuse it.
    return simulate(model_for(point.model), hw, workload, weight_dtype=point.weight_dtype or d,
                    act_dtype=point.act_dtype or d, kv_dtype=d, parallelism=parallelism,
                    allow_long_context=True).latency_s


def decode_contexts(input_len: int, output_len: int, samples: int = DECODE_SAMPLES) -> np.ndarray:
    """Contexts at which to simulate decode: evenly spread over ``input_len .. input_len+steps-1``."""
    steps = output_len - 1
    return np.unique(np.linspace(input_len, input_len + steps - 1, min(samples, steps)).round().astype(int))


def static_batch_time(point: Point, hw: HardwareBase, samples: int = DECODE_SAMPLES) -> tuple[float, float]:
    """(prefill seconds, summed decode seconds) for the whole static batch."""
    b, il, ol = point.sized("batch"), point.sized("input_len"), point.sized("output_len")
    prefill = _step_latency(point, hw, Workload("prefill", batch=b, prompt=il, context=0))
    return prefill, decode_time(point, hw, il, ol - 1, samples)


def decode_time(point: Point, hw: HardwareBase, first_context: int, steps: int,
                samples: int = DECODE_SAMPLES) -> float:
    """Summed latency of ``steps`` decode steps of ``point.sized("batch")`` sequences, step j attending to
    ``first_context + j`` cached tokens (j = 0 .. steps-1)."""
    if steps < 1:
        return 0.0
    sampled = decode_contexts(first_context, steps + 1, samples)
    times = [_step_latency(point, hw, Workload("decode", batch=point.sized("batch"), prompt=first_context,
                                               context=int(c))) for c in sampled]
    every = np.arange(first_context, first_context + steps)
    return float(np.interp(every, sampled, times).sum())


# Decode time is close to affine in the context (module docstring): two samples, its ends, give
# the sum over an interactivity point's output tokens within a fraction of a percent.
INTERACTIVITY_SAMPLES = 2


def interactive_tpot(point: Point, hw: HardwareBase) -> float:
    """Mean time per output token of one of ``point.sized("batch")`` concurrent requests in steady state.

    Each request decodes ``output_len`` tokens in steps of the whole batch, attending to
    ``input_len + j`` cached tokens at its step j.  In aggregated serving the chips also prefill
    the prompts of the requests that start meanwhile: with ``batch`` requests in flight, each
    lasting ``output_len`` steps, ``batch`` new prompts arrive over one request's life, and
    their prefills (one prompt at a time) stall its decode steps.  A disaggregated decode pool
    never prefills.  A serving runtime's scheduler (chunked prefill, prefill batching) would
    move this between the two; the runtime presets of ``accelsim serve`` are where that belongs."""
    batch, prompt, outputs = point.sized("batch"), point.sized("input_len"), point.sized("output_len")
    assert batch and prompt and outputs  # Point checks an interactivity point names all three
    steps = decode_time(point, hw, prompt, outputs, INTERACTIVITY_SAMPLES)
    stalls = 0.0
    if point.prefill_interleaved:
        one = _step_latency(point, hw, Workload("prefill", batch=1, prompt=prompt, context=0))
        stalls = batch * one
    return (steps + stalls) / outputs


def gemm_op(m: int, n: int, k: int, dtype: str) -> MatMul:
    a = Tensor("a", (m, k), dtype, "activation")
    b = Tensor("b", (k, n), dtype, "weight")
    c = Tensor("c", (m, n), GEMM_OUT_DTYPE[dtype], "activation")
    return MatMul("gemm", (a, b), (c,), m=m, k=k, n=n)


def stream_op(reads: int, writes: int, ops_per_element: float) -> Elementwise:
    shape = (STREAM_ELEMENTS,)
    inputs = tuple(Tensor(f"in{i}", shape, STREAM_DTYPE) for i in range(reads))
    # A reduction (BabelStream Dot) writes one scalar instead of an array.
    outputs = tuple(Tensor(f"out{i}", shape, STREAM_DTYPE) for i in range(writes)) or (
        Tensor("sum", (1,), STREAM_DTYPE),)
    return Elementwise("stream", inputs, outputs, elements=STREAM_ELEMENTS, ops_per_element=ops_per_element)


@dataclass(frozen=True)
class Prediction:
    value: float
    decode_share: float | None = None  # of the predicted static-batch time


def predict(point: Point, hw: HardwareBase) -> Prediction:
    """The predicted value of ``point`` in the SI unit its measurement converts to."""
    if point.kind == "ttft":
        return Prediction(_step_latency(point, hw, Workload("prefill", batch=point.sized("batch"),
                                                            prompt=point.sized("input_len"), context=0))
                          + request_overhead(hw))
    if point.kind == "tpot":  # one decode step with the prompt in the KV cache
        return Prediction(_step_latency(point, hw, Workload("decode", batch=point.sized("batch"),
                                                            prompt=point.sized("input_len"), context=point.sized("input_len"))))
    if point.kind == "decode_steps":  # output_len steps timed together, the prompt cached
        return Prediction(decode_time(point, hw, point.sized("input_len"), point.sized("output_len")))
    if point.kind == "interactivity":
        return Prediction(interactive_tpot(point, hw))
    if point.kind == "static_batch":
        prefill, decode = static_batch_time(point, hw)
        total = prefill + decode + request_overhead(hw)
        per = point.chips if point.per_chip else 1
        return Prediction(point.sized("batch") * point.sized("output_len") / total / per, decode / total)
    if point.kind == "gemm":
        g, dtype = point.gemm, point.dtype
        assert g is not None and dtype is not None  # Point._fields_for_kind
        gemm = gemm_op(g.m, g.n, g.k, dtype)
        return Prediction(gemm.flops / cost_alone(gemm, hw).time_s)
    s = point.stream
    assert s is not None  # Point._fields_for_kind
    stream = stream_op(s.reads, s.writes, s.ops_per_element)
    return Prediction(stream.bytes_moved / cost_alone(stream, hw).time_s)


def predict_measured(point: Point, hw: HardwareBase, catalogue: Catalogue) -> Prediction:
    """``predict`` under the runtime the catalogue says measured ``point``."""
    return predict(point, under_runtime(hw, catalogue.runtime(point)))
