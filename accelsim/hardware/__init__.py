"""Where models run: one spec class and one backend module per hardware kind.

Adding a kind means one new module implementing ``base.Backend`` and one entry in ``KINDS``.
"""
from __future__ import annotations

from types import ModuleType

from accelsim.config import loader
from accelsim.errors import ConfigError
from accelsim.hardware import dataflow, gpu, hardwired, systolic
from accelsim.hardware.spec import GpuSpec, HardwareBase, HardwiredSpec, SystolicSpec

KINDS: dict[str, tuple[type[HardwareBase], ModuleType]] = {
    "gpu": (GpuSpec, gpu),
    "systolic": (SystolicSpec, systolic),
    "hardwired": (HardwiredSpec, hardwired),
    "dataflow": (dataflow.DataflowSpec, dataflow),
}


def backend(hw: HardwareBase) -> ModuleType:
    return KINDS[hw.kind][1]


def parse_hardware(data: dict, source: str) -> HardwareBase:
    kind = data.get("kind")
    if kind not in KINDS:
        got = "missing" if kind is None else f"got {kind!r}"
        raise ConfigError(f"{got}; allowed: {', '.join(KINDS)}", source=source, key="kind")
    return loader.validate(KINDS[kind][0], data, source)


def load_hardware(name_or_path: str) -> HardwareBase:
    path = loader.resolve(name_or_path, "hw_configs", "hardware config")
    return parse_hardware(loader.read_document(path), str(path))
