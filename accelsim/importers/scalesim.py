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
import math
from dataclasses import asdict, dataclass
from pathlib import Path

from accelsim.config import loader
from accelsim.config.types import MAX_COUNT
from accelsim.errors import ConfigError
from accelsim.hardware.systolic import DATAFLOWS, folds, scalesim_compute_util, scalesim_cycles

ARCH_SECTION = "architecture_presets"
# SCALE-Sim's GEMM topology header: 'Layer, M, N, K,' in v2's files, 'Layer Name, M, N, K,' in v3's.
LAYER_COLUMN = ("layer", "layer name")
GEMM_COLUMNS = ("m", "n", "k")
# Its convolution topologies: one stride (v2) or a stride per axis (v3's 'Stride Height, Stride Width').
CONV_COLUMNS = ("ifmap height", "ifmap width", "filter height", "filter width", "channels", "num filter")
ACCEPTED = ("'Layer, M, N, K,' (GEMM, v2), 'Layer Name, M, N, K,' (GEMM, v3) or 'Layer name, IFMAP "
            "Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, Strides,' (conv)")


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
    """A SCALE-Sim topology CSV as GEMMs: its GEMM files (v2 and v3 headers; a trailing comma
    is usual) as they are, its convolution files lowered the way SCALE-Sim lowers them (M =
    output pixels, N = filters, K = filter window x channels)."""
    source = str(path)
    text = loader.read_text(path, "topology")
    try:
        rows = [[cell.strip() for cell in row] for row in csv.reader(io.StringIO(text, newline=""))]
    except csv.Error as err:
        raise ConfigError(f"not a CSV topology: {err}", source=source) from None
    rows = [_without_trailing_empties(row) for row in rows]  # 'Layer, M, N, K,' ends in a comma
    rows = [row for row in rows if row]
    header = tuple(" ".join(c.lower().split()) for c in rows[0]) if rows else ()
    if header[:1] not in [(name,) for name in LAYER_COLUMN]:
        raise ConfigError(f"expected a SCALE-Sim topology header: {ACCEPTED}", source=source, key="line 1")
    if header[1:4] == GEMM_COLUMNS:
        reader, width = _gemm_row, 4
    elif header[1:7] == CONV_COLUMNS and len(header) >= 8:
        reader, width = _conv_row, 8
    else:
        raise ConfigError(f"expected a SCALE-Sim topology header: {ACCEPTED}; got {', '.join(rows[0])}",
                          source=source, key="line 1")
    layers = []
    for line, row in enumerate(rows[1:], start=2):
        if len(row) < width:
            raise ConfigError(f"expected {width} fields ({', '.join(rows[0][:width])}), got {len(row)}",
                              source=source, key=f"line {line}")
        layers.append(reader(row, [h for h in rows[0]], source, line))
    if not layers:
        raise ConfigError("the topology lists no layers", source=source)
    return layers


def _without_trailing_empties(row: list[str]) -> list[str]:
    """A row less its empty cells at the end only: an empty cell inside it stays, to be refused
    where it stands, not dropped so that the next value shifts into its column."""
    end = len(row)
    while end and not row[end - 1]:
        end -= 1
    return row[:end]


def _gemm_row(row: list[str], header: list[str], source: str, line: int) -> GemmLayer:
    m, n, k = (_positive_int(v, source, f"line {line} {col}") for v, col in zip(row[1:4], "MNK"))
    return GemmLayer(row[0], m, n, k)


def _conv_row(row: list[str], header: list[str], source: str, line: int) -> GemmLayer:
    ih, iw, fh, fw, ch, nf = (_positive_int(v, source, f"line {line} {col}")
                              for v, col in zip(row[1:7], header[1:7]))
    # One stride column serves both axes (v2); v3 gives height and width.
    sh = _positive_int(row[7], source, f"line {line} {header[7]}")
    sw = _positive_int(row[8], source, f"line {line} {header[8]}") if len(row) > 8 and len(header) > 8 else sh
    if fh > ih or fw > iw:
        raise ConfigError(f"filter {fh}x{fw} is larger than its input {ih}x{iw} (SCALE-Sim pads nothing)",
                          source=source, key=f"line {line}")
    out_h = math.ceil((ih - fh + sh) / sh)  # SCALE-Sim's output size: no padding
    out_w = math.ceil((iw - fw + sw) / sw)
    return GemmLayer(row[0], out_h * out_w, nf, fh * fw * ch)


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
