"""Silicon area and cost: MAC arrays, on-chip SRAM and ROM, memory PHYs; die cost from wafer
cost and yield; energy cost and $ per million tokens; the TDP check.

Every function reads numbers from a spec or from ``accelsim.dse.columns`` (the same spec seen
over many design points, numbers as arrays), so one formula serves one chip and a sweep.
Per-node constants carry their sources.  Where a config states its die area the stated figure
is the die; otherwise the die is the sum of the modelled components (control, NoC and I/O other
than memory PHYs are not modelled, so a modelled die is a lower bound).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

from accelsim.hardware import backend
from accelsim.hardware.arraymath import exp, safe_divisor, sqrt, vmax, where
from accelsim.model.spec import ModelSpec

WAFER_DIAMETER_MM = 300.0
# Chips are paid for over this service life and run at the result's average power meanwhile.
# source: assumptions -- 3 years is a common accelerator depreciation schedule; 0.08 USD/kWh
# is near the US industrial average retail price (EIA Electric Power Monthly, 2023).
SERVICE_YEARS = 3.0
ELECTRICITY_USD_PER_KWH = 0.08


@dataclass(frozen=True)
class NodeConstants:
    sram_um2_per_bit: float   # SRAM macro area per bit, periphery included
    mac_scale: float          # logic area relative to 16 nm
    wafer_cost_usd: float     # 300 mm wafer
    defect_density_cm2: float
    source: str


_SRAM16 = 0.10  # um2/bit at 16 nm, Stream 2.x public defaults (refdata energy.csv)
NODES: dict[str, NodeConstants] = {
    "16nm": NodeConstants(_SRAM16, 1.0, 3984.0, 0.10,
                          "SRAM 0.10 um2/bit and MAC 200 um2: Stream 2.x 16 nm defaults (refdata energy.csv); "
                          "wafer: CSET 'AI Chips' (Khan & Mann 2020) 16/12 nm estimate; D0: estimate"),
    "14nm": NodeConstants(_SRAM16, 1.0, 3984.0, 0.10,
                          "treated as 16 nm (estimate; Intel 14 nm density is close to TSMC 16FF+)"),
    "7nm": NodeConstants(_SRAM16 * 0.027 / 0.074, 1 / 3.3, 9346.0, 0.09,
                         "SRAM: 16 nm macro scaled by the TSMC HD bit-cell ratio 0.027/0.074 um2 (N7 vs "
                         "16FF+, as reported by WikiChip); logic: TSMC's ~3.3x N7 density over 16FF+ "
                         "(WikiChip); wafer: CSET 2020 7 nm estimate; D0: ~0.09/cm2 press-reported for "
                         "mature N7 (estimate)"),
    "6nm": NodeConstants(_SRAM16 * 0.027 / 0.074, 1 / (3.3 * 1.18), 9346.0, 0.09,
                         "N7 values with TSMC's stated +18% N6 logic density (WikiChip); wafer as N7 (estimate)"),
    "5nm": NodeConstants(_SRAM16 * 0.021 / 0.074, 1 / (3.3 * 1.8), 16988.0, 0.10,
                         "SRAM: N5 HD bit cell 0.021 um2 (TSMC IEDM 2019 via WikiChip) scaled as above; logic: "
                         "TSMC's 1.8x N5 over N7; wafer: CSET 2020 5 nm estimate; D0 ~0.1/cm2 "
                         "(TSMC figure reported by AnandTech 2020; estimate)"),
    "4nm": NodeConstants(_SRAM16 * 0.021 / 0.074, 1 / (3.3 * 1.8 * 1.06), 16988.0, 0.10,
                         "N5 values with TSMC's ~6% N4 logic shrink (press; estimate); wafer as N5"),
}

# Area of one MAC unit per datapath relative to a 16-bit floating-point MAC (200 um2 at 16 nm,
# Stream defaults, refdata energy.csv).  source: estimates from the multiplier-area ~ width^2
# rule (fp32 24-bit vs 11-bit significands; int8/fp8 8-bit; int4 4-bit) and, for ternary
# add-only units, Aladdin 40 nm adder 179 um2 vs multiplier 4600 um2 (refdata energy.csv).
MAC16_UM2 = 200.0
MAC_RELATIVE = {"fp32": (24 / 11) ** 2, "bf16": 1.0, "fp16": 1.0, "fp8": 0.5, "int8": 0.5,
                "int4": 0.15, "ternary": 179 / 4600,
                # block-scaled formats by element width (the per-block scale multiply is shared by
                # the block): FP4 as int4, FP8 as fp8, FP6 between them (estimate)
                "nvfp4": 0.15, "mxfp4": 0.15, "mxfp6": 0.3, "mxfp8": 0.5}
# source: estimate (not in refdata) of one HBM PHY's beachfront area; DDR PHYs are smaller.
PHY_MM2 = 12.0


@dataclass(frozen=True)
class AreaBreakdown:
    mac_mm2: float
    sram_mm2: float
    rom_mm2: float
    phy_mm2: float
    die_mm2: float       # stated die area, or the modelled sum when none is stated
    stated: bool

    @property
    def modelled_mm2(self) -> float:
        return self.mac_mm2 + self.sram_mm2 + self.rom_mm2 + self.phy_mm2


def node_of(hw) -> NodeConstants:
    name = hw.area.node if hw.area is not None and hw.area.node else "7nm"
    return NODES[name]


def mac_units(hw, dtype: str) -> float:
    """Equivalent MAC units of a datapath: its peak over 2 FLOP per MAC per cycle."""
    return hw.compute.matrix[dtype] / (2.0 * hw.compute.clock)


def datapath_mm2(hw, node: NodeConstants) -> float:
    """A multi-format datapath is sized by its most demanding format (units x unit area)."""
    per_dtype = (mac_units(hw, d) * MAC16_UM2 * MAC_RELATIVE[d] * node.mac_scale for d in hw.compute.matrix)
    return vmax(*per_dtype) * 1e-6


def onchip_bytes(hw, model: ModelSpec | None = None) -> tuple[float, float]:
    """(SRAM bytes, ROM bits) held on die running ``model``: the kind says what its die stores
    (``Backend.die_storage``)."""
    return backend(hw).die_storage(hw, model)


def area_breakdown(hw, model: ModelSpec | None = None) -> AreaBreakdown:
    node = node_of(hw)
    sram_bytes, rom_bits = onchip_bytes(hw, model)
    sram = sram_bytes * 8 * node.sram_um2_per_bit * 1e-6
    rom = rom_bits / (hw.memory.weights.density * 8) if rom_bits else 0.0  # density is B/mm2
    phys = (hw.area.phys if hw.area is not None else 0) * PHY_MM2
    mac = datapath_mm2(hw, node)
    stated = hw.area is not None and hw.area.die is not None
    die = hw.area.die if stated else mac + sram + rom + phys
    return AreaBreakdown(mac, sram, rom, phys, die, stated)


def dies_per_wafer(die_mm2: float, diameter_mm: float = WAFER_DIAMETER_MM) -> float:
    """Gross dies per wafer with the edge-loss term (de Vries, 'Investigating the die per wafer
    formula', IEEE Trans. Semicond. Manuf. 2005)."""
    r = diameter_mm / 2
    return vmax(math.pi * r * r / die_mm2 - math.pi * diameter_mm / sqrt(2 * die_mm2), 0.0)


def murphy_yield(die_mm2: float, defects_per_cm2: float) -> float:
    """Murphy's yield model, Y = ((1 - e^-AD) / AD)^2 (Murphy, Proc. IEEE 1964)."""
    ad = die_mm2 / 100.0 * defects_per_cm2
    safe = safe_divisor(ad, ad == 0)
    return where(ad == 0, 1.0, ((1 - exp(-safe)) / safe) ** 2)


def die_cost_usd(hw, model: ModelSpec | None = None) -> float:
    node = node_of(hw)
    die = area_breakdown(hw, model).die_mm2
    wafer = hw.area.wafer_cost if hw.area is not None and hw.area.wafer_cost else node.wafer_cost_usd
    if hw.area is not None and hw.area.wafer_scale:
        return wafer
    good = dies_per_wafer(die) * murphy_yield(die, node.defect_density_cm2)
    return where(good > 0, wafer / safe_divisor(good, good <= 0), math.inf)


def usd_per_mtoken(die_usd: float, power_w: float, tokens_per_s: float) -> float:
    """Silicon amortised over the service life plus electricity at the average power."""
    per_s = die_usd / (SERVICE_YEARS * 365.25 * 86400) + power_w * ELECTRICITY_USD_PER_KWH / 3.6e6
    return per_s / tokens_per_s * 1e6


def tdp_note(hw, power_w: float) -> str | None:
    if power_w > hw.power.tdp:
        return (f"average power {power_w:.0f} W exceeds the {hw.power.tdp:.0f} W TDP of {hw.name}: "
                f"the chip would throttle, so this throughput is optimistic")
    return None


def annotate(result, hw, model: ModelSpec | None = None):
    """The result with die area, $/Mtoken and, where exceeded, a TDP warning filled in."""
    die_usd = die_cost_usd(hw, model)
    notes = result.notes
    note = tdp_note(hw, result.power_w)
    if note:
        notes = (*notes, note)
    return replace(result, area_mm2=area_breakdown(hw, model).die_mm2, die_cost_usd=die_usd,
                   usd_per_mtoken=usd_per_mtoken(die_usd, result.power_w, result.tokens_per_s),
                   notes=notes)
