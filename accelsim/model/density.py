"""Activation density: the fraction of an op's input activations that are non-negligible.

A ``DensityProfile`` maps op names (module paths for imported torch graphs, the lowering's
names such as ``layers.3.mlp.down`` for catalogue models) to the density of that op's input.
It is measured once (``accelsim.importers.density.measure_density``), saved as YAML or JSON,
and carried by ``Workload.density`` so hardware that skips zeros can read it.  Hardware that
cannot skip zeros ignores it: density changes what a zero-skipping datapath saves, never the
work a dense datapath does.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import yaml
from pydantic import Field, model_validator

from accelsim.config import loader
from accelsim.config.types import Spec
from accelsim.errors import AccelsimError, ConfigError
from accelsim.graph import Graph

Fraction = Annotated[float, Field(ge=0.0, le=1.0)]


class DensityEntry(Spec):
    """Density of the input activations of one op (or of every op under a module path)."""

    name: str = Field(min_length=1)
    density: Fraction
    samples: int | None = Field(default=None, ge=1)  # elements measured, when measured


class DensityProfile(Spec):
    """Per-op input density, with the threshold that decided what counts as negligible."""

    threshold: float = Field(ge=0.0)  # |x| > threshold counts as non-negligible
    default: Fraction = 1.0  # ops with no entry are assumed dense
    source: str = ""  # what was measured (module, inputs), for the record
    entries: tuple[DensityEntry, ...] = ()

    @model_validator(mode="after")
    def _unique_names(self):
        seen: set[str] = set()
        for entry in self.entries:
            if entry.name in seen:
                raise ValueError(f"duplicate entry name {entry.name!r}")
            seen.add(entry.name)
        return self

    def density_of(self, op_name: str) -> float:
        """The entry named ``op_name``; else the longest entry that is a dotted prefix of it
        (a module's entry covers the ops lowered inside it); else ``default``."""
        by_name = {e.name: e.density for e in self.entries}
        parts = op_name.split(".")
        for cut in range(len(parts), 0, -1):
            prefix = ".".join(parts[:cut])
            if prefix in by_name:
                return by_name[prefix]
        return self.default

    def for_graph(self, graph: Graph) -> dict[str, float]:
        """Input density of every multiply-accumulate-bearing op of ``graph``, by op name."""
        return {op.name: self.density_of(op.name) for op in graph if op.macs}

    def save(self, path: str | Path) -> Path:
        """Write as JSON when the suffix is ``.json``, else YAML."""
        path = Path(path)
        data = self.model_dump(mode="json", exclude_none=True)
        text = json.dumps(data, indent=2) if path.suffix == ".json" else yaml.safe_dump(data, sort_keys=False)
        path.write_text(text, encoding="utf-8")
        return path


def load_density(path: str | Path) -> DensityProfile:
    """Read a profile written by ``DensityProfile.save`` (or by hand); one-line errors."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError("no such density profile file", source=str(path))
    return loader.validate(DensityProfile, loader.read_document(path), str(path))


def effective_macs(macs: float, density: float, skip_granularity: int = 1) -> float:
    """Multiply-accumulates left when the datapath skips groups of ``skip_granularity``
    consecutive input activations that are all negligible.

    A group can be skipped only when every element in it is negligible; with elements
    independently non-negligible at rate ``density`` that happens with probability
    ``(1 - density) ** g``, so the work left is ``macs * (1 - (1 - density) ** g)``.
    ``g = 1`` (per-element skipping) gives ``macs * density``.  Real activations cluster their
    zeros (whole ReLU channels die), which skips more groups than independence predicts, so
    this is the conservative estimate for coarse granularities.

    Every hardware kind with ``compute.zero_skipping`` charges matmuls this many MACs
    (``hardware.common.skip_share``; the profile reaches the costs via ``Placement.density``).
    """
    if not 0.0 <= density <= 1.0:
        raise AccelsimError(f"density must be within [0, 1], got {density!r}")
    if isinstance(skip_granularity, bool) or not isinstance(skip_granularity, int) or skip_granularity < 1:
        raise AccelsimError(f"skip_granularity must be an integer >= 1, got {skip_granularity!r}")
    if macs < 0:
        raise AccelsimError(f"macs must be >= 0, got {macs!r}")
    return macs * (1.0 - (1.0 - density) ** skip_granularity)
