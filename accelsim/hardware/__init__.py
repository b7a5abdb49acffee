"""Where models run: one spec class and one backend per hardware kind.

Adding a kind means one new ``BackendBase`` subclass implementing ``base.Backend`` (its spec
class in ``spec``) and one entry in ``KINDS``; mypy checks the entry against the protocol.
"""
from __future__ import annotations

from accelsim.config import loader
from accelsim.errors import ConfigError
from accelsim.hardware import dataflow, gpu, hardwired, systolic
from accelsim.hardware.base import Backend
from accelsim.hardware.spec import HardwareBase

KINDS: dict[str, Backend] = {b.name: b for b in (gpu.BACKEND, systolic.BACKEND, hardwired.BACKEND,
                                                  dataflow.BACKEND)}


def backend(hw: HardwareBase) -> Backend:
    """The backend of ``hw``'s kind: every question about the chip that depends on its kind
    goes through it."""
    return KINDS[hw.kind]


def parse_hardware(data: dict, source: str) -> HardwareBase:
    kind = data.get("kind")
    if not isinstance(kind, str) or kind not in KINDS:
        got = "missing" if kind is None else f"got {kind!r}"
        raise ConfigError(f"{got}; allowed: {', '.join(KINDS)}", source=source, key="kind")
    return loader.validate(KINDS[kind].spec, data, source)


def load_hardware(name_or_path: str) -> HardwareBase:
    path = loader.resolve(name_or_path, "hw_configs", "hardware config")
    return loader.load_spec(path, parse_hardware, "hardware")
