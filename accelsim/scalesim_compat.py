"""Read SCALE-Sim's own inputs (an INI-style ``.cfg`` and a GEMM topology ``.csv``) and report,
per layer, the numbers SCALE-Sim's COMPUTE_REPORT gives, from the closed-form fold model in
``accelsim.hardware.systolic`` instead of a cycle-by-cycle trace.

Only the keys that decide stall-free compute cycles are read (array height/width, dataflow);
SRAM sizes and bandwidth change SCALE-Sim's stall cycles, which are zero with
``InterfaceBandwidth: CALC``, the mode this reproduces.
"""
from __future__ import annotations

import configparser
import csv
import io
from dataclasses import asdict, dataclass
from pathlib import Path

from accelsim.config import loader
from accelsim.config.types import MAX_COUNT
from accelsim.errors import ConfigError
from accelsim.hardware.systolic import DATAFLOWS, folds, scalesim_compute_util, scalesim_cycles

ARCH_SECTION = "architecture_presets"
TOPOLOGY_HEADER = ("layer name", "m", "n", "k")


@dataclass(frozen=True)
class ScaleSimArray:
    rows: int
    cols: int
    dataflow: str


@dataclass(frozen=True)
class GemmLayer:
    name: str
    m: int
    n: int
    k: int


@dataclass(frozen=True)
class LayerReport:
    """One row of SCALE-Sim's COMPUTE_REPORT, percentages as SCALE-Sim prints them."""

    layer: str
    m: int
    n: int
    k: int
    total_cycles: int
    stall_cycles: int
    overall_util_pct: float
    mapping_efficiency_pct: float
    compute_util_pct: float

    def to_dict(self) -> dict:
        return asdict(self)


def _positive_int(text: str, source: str, key: str) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        raise ConfigError(f"expected a positive integer, got {text.strip()!r}", source=source, key=key) from None
    if not 0 < value <= MAX_COUNT:
        raise ConfigError(f"expected a positive integer <= {MAX_COUNT}, got {text.strip()[:40]}",
                          source=source, key=key)
    return value


def read_config(path: str | Path) -> ScaleSimArray:
    """ArrayHeight, ArrayWidth and Dataflow from ``[architecture_presets]``."""
    source = str(path)
    # Option names are case-insensitive, ':' or '='; no '%' interpolation (SCALE-Sim has none,
    # and a stray '%' must be a bad value, not a parser crash).
    parser = configparser.ConfigParser(interpolation=None)
    text = loader.read_text(path, "SCALE-Sim config")
    try:
        parser.read_string(text, source)
    except configparser.Error as err:
        raise ConfigError(f"not a SCALE-Sim INI config: {err.message.splitlines()[0]}", source=source) from None
    if not parser.has_section(ARCH_SECTION):
        raise ConfigError(f"missing section [{ARCH_SECTION}] (SCALE-Sim's array settings)", source=source)
    arch = parser[ARCH_SECTION]
    values = {}
    for key in ("ArrayHeight", "ArrayWidth", "Dataflow"):
        if key.lower() not in arch:
            raise ConfigError("required key is missing", source=source, key=f"{ARCH_SECTION}.{key}")
        values[key] = arch[key.lower()]
    dataflow = values["Dataflow"].strip().lower()
    if dataflow not in DATAFLOWS:
        raise ConfigError(f"got {dataflow!r}, allowed: {', '.join(DATAFLOWS)}", source=source,
                          key=f"{ARCH_SECTION}.Dataflow")
    return ScaleSimArray(rows=_positive_int(values["ArrayHeight"], source, f"{ARCH_SECTION}.ArrayHeight"),
                         cols=_positive_int(values["ArrayWidth"], source, f"{ARCH_SECTION}.ArrayWidth"),
                         dataflow=dataflow)


def read_topology(path: str | Path) -> list[GemmLayer]:
    """Rows of ``Layer Name, M, N, K,`` (SCALE-Sim's GEMM topology; a trailing comma is usual)."""
    source = str(path)
    text = loader.read_text(path, "topology")
    try:
        rows = [[cell.strip() for cell in row] for row in csv.reader(io.StringIO(text, newline=""))]
    except csv.Error as err:
        raise ConfigError(f"not a CSV topology: {err}", source=source) from None
    rows = [[c for c in row if c] for row in rows]
    rows = [row for row in rows if row]
    if not rows or tuple(c.lower() for c in rows[0][:4]) != TOPOLOGY_HEADER:
        raise ConfigError("expected a GEMM topology with header 'Layer Name, M, N, K,'", source=source,
                          key="line 1")
    layers = []
    for line, row in enumerate(rows[1:], start=2):
        if len(row) < 4:
            raise ConfigError(f"expected 4 fields (Layer Name, M, N, K), got {len(row)}", source=source,
                              key=f"line {line}")
        m, n, k = (_positive_int(v, source, f"line {line} {col}") for v, col in zip(row[1:4], "MNK"))
        layers.append(GemmLayer(row[0], m, n, k))
    if not layers:
        raise ConfigError("the topology lists no layers", source=source)
    return layers


def layer_report(layer: GemmLayer, array: ScaleSimArray) -> LayerReport:
    r, c, df = array.rows, array.cols, array.dataflow
    cycles = scalesim_cycles(layer.m, layer.k, layer.n, r, c, df)
    mapping = folds(layer.m, layer.k, layer.n, r, c, df).mapping_efficiency
    util = scalesim_compute_util(layer.m, layer.k, layer.n, r, c, df)
    overall = layer.m * layer.n * layer.k / (cycles * r * c)
    return LayerReport(layer.name, layer.m, layer.n, layer.k, cycles, 0, 100.0 * overall,
                       100.0 * mapping, 100.0 * util)


def compute_report(config: str | Path, topology: str | Path) -> tuple[ScaleSimArray, list[LayerReport]]:
    array = read_config(config)
    return array, [layer_report(layer, array) for layer in read_topology(topology)]
