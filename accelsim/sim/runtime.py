"""Serving runtimes: what the engine software (vLLM, SGLang, TensorRT-LLM, NIM) decides that the
chip does not — how it schedules, how much KV it reserves, what it does on preemption, how many
tokens a step takes, how big the KV pool is, and what the host costs per step and per request.

A preset is a YAML file in ``runtimes/`` (``accelsim serve --runtime NAME``).  Every setting is
``{value: ..., source: ...}``: the engine's documented default with its version, never a value
fitted to a measured point.  Explicit CLI options override the preset.  ``accelsim`` is today's
defaults written down as a preset.  Validation reads the same kernel-library settings
(``RuntimeGpu``) for the software that produced each measured row.
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from accelsim import hardware
from accelsim.config.types import Bytes, PositiveInt, Seconds, Spec
from accelsim.dtypes import DType
from accelsim.errors import ConfigError
from accelsim.hardware.spec import AttentionKernel, HardwareBase
from accelsim.sim.serving import ServeConfig
from accelsim.transform.fusion import Unfused

SOURCE = Field(min_length=3)


class RuntimeGpu(Spec):
    """``gpu`` keys of the hardware config a runtime overrides (``GpuSection``): its kernels and,
    where fitted on the engine's own GPU runs, its step timing (``step_overhead``, the share of
    the memory bandwidth its attention kernel reaches)."""

    attention: AttentionKernel | None = None
    attention_dtype: DType | None = None
    unfused: list[Unfused] | None = None
    step_overhead: Seconds | None = None
    sequence_overhead: Seconds | None = None
    worker_overhead: Seconds | None = None
    host_wait_share: float | None = Field(default=None, ge=0.0, le=1.0, strict=True)
    attention_bandwidth: float | None = Field(default=None, gt=0.0, le=1.0)
    custom_all_reduce: Bytes | None = None

    @model_validator(mode="after")
    def _sets_something(self):
        if not self.model_dump(exclude_none=True):
            raise ValueError(f"a runtime's gpu settings need one of {', '.join(type(self).model_fields)}")
        return self


class SchedulerSetting(Spec):
    value: Literal["static", "continuous"]
    source: str = SOURCE


class CountSetting(Spec):
    value: PositiveInt
    source: str = SOURCE


class ShareSetting(Spec):
    value: float = Field(ge=0.0, le=1.0)
    source: str = SOURCE


class PoolSetting(Spec):
    value: float = Field(gt=0.0, le=1.0)
    basis: Literal["free", "total"]
    source: str = SOURCE


class SwitchSetting(Spec):
    # strict: YAML's 1 or 'no' is a typo here, not a switch (pydantic would read them as bools)
    value: bool = Field(strict=True)
    source: str = SOURCE


class PreemptionSetting(Spec):
    value: Literal["recompute", "swap"]
    source: str = SOURCE


class OverheadSetting(Spec):
    """Seconds of host work; null keeps the hardware config's calibrated value."""

    # strict: a number (ints too), never a bool or a quoted string read as seconds
    value: float | None = Field(default=None, ge=0.0, le=1.0, strict=True)
    source: str = SOURCE


class PipelineSetting(Spec):
    """How the engine keeps a pipeline-parallel replica's micro-batches in flight
    (``ServeConfig.pp_max_batch`` and ``pp_kv``)."""

    max_batch: Literal["each", "all"]
    kv: Literal["shared", "split"]
    source: str = SOURCE


class KernelSetting(Spec):
    value: RuntimeGpu
    source: str = SOURCE


# Preset key -> ServeConfig field it sets.
SERVE_FIELDS = {"scheduler": "scheduler", "kv_reserve": "reserve_output", "preemption": "preemption",
                "max_tokens_per_step": "chunk", "max_batch": "max_batch", "block_size": "block_size"}


class RuntimePreset(Spec):
    name: str = Field(min_length=1)
    engine: str = Field(min_length=3)  # the software and version the defaults are read from
    scheduler: SchedulerSetting
    kv_reserve: ShareSetting
    preemption: PreemptionSetting
    max_tokens_per_step: CountSetting
    max_batch: CountSetting
    block_size: CountSetting
    kv_memory: PoolSetting
    request_overhead: OverheadSetting
    step_overhead: OverheadSetting
    kernels: KernelSetting | None = None
    # On: the engine caches shared prefixes by default, wherever it can (continuous batching of
    # an attention-only model; ServeConfig's "auto").
    prefix_cache: SwitchSetting | None = None
    # On: the host schedules the next step while the chip runs this one (an overlap scheduler),
    # so a new request joins one step later (ServeConfig.overlap_schedule).  Off when absent.
    overlap_schedule: SwitchSetting | None = None
    # Off: a step that prefills runs no decodes (a separate prefill batch); on when absent
    # (prefill chunks and decodes share a step).
    mixed_prefill: SwitchSetting | None = None
    # Off: a step that carries a prefill runs eagerly (only decode-only steps replay CUDA
    # graphs), so the host issues each of its kernels, ``eager_kernel_host`` seconds apiece
    # (ServeConfig.eager_prefill_kernel_s).  On or absent: no host bound on such steps.
    prefill_graphs: SwitchSetting | None = None
    eager_kernel_host: OverheadSetting | None = None
    # Pipeline parallelism's micro-batches: max_batch per micro-batch or over all of them, the KV
    # pool shared or split.  Absent: ServeConfig's defaults (one scheduler over every micro-batch
    # and one pool, as vLLM V1).
    pipeline_parallel: PipelineSetting | None = None

    @model_validator(mode="after")
    def _eager_cost_given(self):
        eager = self.prefill_graphs is not None and not self.prefill_graphs.value
        if eager and (self.eager_kernel_host is None or self.eager_kernel_host.value is None):
            raise ValueError("prefill_graphs: false needs eager_kernel_host (host seconds per kernel of an eager step)")
        # Without prefill_graphs every step replays graphs, so the figure would apply nowhere
        # (with prefill_graphs: true it waits for a run that turns them off, validation's
        # engine_settings).
        if self.prefill_graphs is None and self.eager_kernel_host is not None:
            raise ValueError("eager_kernel_host applies only beside prefill_graphs (false: prefill steps run eagerly)")
        return self

    def settings(self) -> dict[str, Any]:
        """Every setting -> its object (each has ``value`` and ``source``)."""
        return {name: getattr(self, name) for name in type(self).model_fields
                if name not in ("name", "engine") and getattr(self, name) is not None}

    def with_kernels(self, values: dict[str, Any], source: str) -> RuntimePreset:
        """This preset with the given ``kernels`` keys (``RuntimeGpu`` fields, in SI units: values
        read from a validated spec or a fit's trial, so not parsed again) replaced, the others
        kept, under ``source``."""
        own = self.kernels.value if self.kernels is not None else RuntimeGpu.model_construct()
        gpu = own.model_copy(update=values)
        return self.model_copy(update={"kernels": KernelSetting(value=gpu, source=source)})

    def serve_config(self, **overrides: Any) -> ServeConfig:
        """The scheduler settings, with the options given explicitly (not None) on top."""
        values: dict[str, Any] = {field: getattr(self, key).value for key, field in SERVE_FIELDS.items()}
        values["memory_utilisation"] = self.kv_memory.value
        values["memory_basis"] = self.kv_memory.basis
        if self.prefix_cache is not None and self.prefix_cache.value:
            values["prefix_cache"] = "auto"
        for key in ("overlap_schedule", "mixed_prefill"):
            setting = getattr(self, key)
            if setting is not None:
                values[key] = setting.value
        if self.pipeline_parallel is not None:
            values["pp_max_batch"] = self.pipeline_parallel.max_batch
            values["pp_kv"] = self.pipeline_parallel.kv
        if self.prefill_graphs is not None and not self.prefill_graphs.value and self.eager_kernel_host is not None:
            values["eager_prefill_kernel_s"] = self.eager_kernel_host.value
        values.update({k: v for k, v in overrides.items() if v is not None})
        return ServeConfig(**values)


def on_hardware(hw: HardwareBase, preset: RuntimePreset | None) -> HardwareBase:
    """``hw`` under ``preset``: its host overheads replace the config's (the kind says which keys
    hold them: ``Backend.overhead_keys``), then on a GPU its kernel settings (``kernels``)."""
    if preset is None:
        return hw
    keys = hardware.backend(hw).overhead_keys(hw)
    sections: dict[str, dict[str, Any]] = {}
    for role, setting in (("request", preset.request_overhead), ("step", preset.step_overhead)):
        if setting.value is None:
            continue
        if role not in keys:
            raise ConfigError(f"runtime '{preset.name}' sets a per-{role} host overhead, but "
                              f"{hw.name} (kind '{hw.kind}') has none to set")
        section, key = keys[role].split(".", 1)
        sections.setdefault(section, {})[key] = setting.value
    # The engine's GPU kernels and GPU step timing are keys of the gpu section: on a kind without
    # one (a TPU under vLLM, say) they do not exist, and the chip's own step timing stands.
    if preset.kernels is not None and "gpu" in type(hw).model_fields:
        sections.setdefault("gpu", {}).update(preset.kernels.value.model_dump(exclude_none=True))
    return hw.model_copy(update={section: getattr(hw, section).model_copy(update=update)
                                 for section, update in sections.items()})
