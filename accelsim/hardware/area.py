"""Silicon area: MAC arrays, on-chip SRAM and ROM, memory PHYs sized by the die edge they
need, the reticle limit and the split of a larger design into dies joined by die-to-die links;
the TDP check.  What the silicon costs lives in ``accelsim.economics``.

Every function reads numbers from a spec or from ``accelsim.dse.columns`` (the same spec seen
over many design points, numbers as arrays), so one formula serves one chip and a sweep.
Per-node constants carry their sources.  Where a config states its die area the stated figure
is the silicon; otherwise it is the sum of the modelled components (control, NoC and I/O other
than memory PHYs are not modelled, so a modelled die is a lower bound).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from accelsim.hardware import backend
from accelsim.hardware.arraymath import ceil, vmax, where
from accelsim.hardware.spec import HardwareBase
from accelsim.memo import ByIdentity
from accelsim.model.spec import ModelSpec


@dataclass(frozen=True)
class NodeConstants:
    sram_um2_per_bit: float   # SRAM macro area per bit, periphery included
    mac_scale: float          # logic area relative to 16 nm
    source: str


_SRAM16 = 0.10  # um2/bit at 16 nm, Stream 2.x public defaults (refdata energy.csv)
NODES: dict[str, NodeConstants] = {
    "16nm": NodeConstants(_SRAM16, 1.0,
                          "SRAM 0.10 um2/bit and MAC 200 um2: Stream 2.x 16 nm defaults (refdata energy.csv)"),
    "14nm": NodeConstants(_SRAM16, 1.0,
                          "treated as 16 nm (estimate; Intel 14 nm density is close to TSMC 16FF+)"),
    "7nm": NodeConstants(_SRAM16 * 0.027 / 0.074, 1 / 3.3,
                         "SRAM: 16 nm macro scaled by the TSMC HD bit-cell ratio 0.027/0.074 um2 (N7 vs "
                         "16FF+, as reported by WikiChip); logic: TSMC's ~3.3x N7 density over 16FF+ "
                         "(WikiChip)"),
    "6nm": NodeConstants(_SRAM16 * 0.027 / 0.074, 1 / (3.3 * 1.18),
                         "N7 values with TSMC's stated +18% N6 logic density (WikiChip)"),
    "5nm": NodeConstants(_SRAM16 * 0.021 / 0.074, 1 / (3.3 * 1.8),
                         "SRAM: N5 HD bit cell 0.021 um2 (TSMC IEDM 2019 via WikiChip) scaled as above; logic: "
                         "TSMC's 1.8x N5 over N7"),
    "4nm": NodeConstants(_SRAM16 * 0.021 / 0.074, 1 / (3.3 * 1.8 * 1.06),
                         "N5 values with TSMC's ~6% N4 logic shrink (press; estimate)"),
    "3nm": NodeConstants(_SRAM16 * 0.021 / 0.074, 1 / (3.3 * 1.8 * 1.6),
                         "SRAM: N3E keeps N5's 0.021 um2 HD bit cell (TSMC, as reported by WikiChip 2022), "
                         "so SRAM does not shrink; logic: TSMC's ~1.6x N3 density over N5 (press; estimate)"),
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
# Die edge one HBM PHY occupies, and what one stack delivers.  source: shoreline: estimate,
# bounded by H100's six stack sites along the two long edges of its ~28.5 mm-wide 814 mm2 die
# (at most 9.5 mm each); bandwidth: HBM3E >1.2 TB/s per stack (Micron HBM3E announcement, 2023).
HBM_SHORELINE_MM = 8.0
HBM_STACK_BANDWIDTH = 1.2e12  # B/s
# Memory PHYs sit along two opposite edges of the die; the other two carry host I/O and links.
MEMORY_EDGES = 2

# One exposure field of a lithography scanner: no single die can be larger.
# source: ASML scanner field 26 mm x 33 mm (ASML product specifications; the 858 mm2 limit
# NVIDIA cites for reticle-sized dies).
RETICLE_MM = (26.0, 33.0)
RETICLE_MM2 = RETICLE_MM[0] * RETICLE_MM[1]
# A design larger than the reticle becomes dies in a chain on one interposer, each link a UCIe
# 2.5D die-to-die interface.  source: UCIe 2.5D (25-55 um bump pitch) up to 1.3 TB/s per mm of
# die edge at 0.25-0.3 pJ/bit (D. Das Sharma, Hot Interconnects 2025, as reported by Converge
# Digest); the link bandwidth (1 TB/s each way) and the PHY's 1 mm depth are estimates.
D2D_BANDWIDTH = 1.0e12           # B/s per link
D2D_BYTES_PER_S_PER_MM = 1.3e12  # shoreline density
D2D_DEPTH_MM = 1.0
D2D_PJ_PER_BIT = 0.3
D2D_LINK_END_MM2 = D2D_BANDWIDTH / D2D_BYTES_PER_S_PER_MM * D2D_DEPTH_MM  # one end of a link


@dataclass(frozen=True)
class AreaBreakdown:
    mac_mm2: Any
    sram_mm2: Any
    rom_mm2: Any
    phy_mm2: Any
    die_mm2: Any         # silicon of one chip: stated, or the modelled sum (at least the
    stated: bool         # shoreline its memory PHYs need) when none is stated
    phys: Any = 0        # memory PHYs (HBM stacks / DRAM channels)

    @property
    def modelled_mm2(self) -> Any:
        return self.mac_mm2 + self.sram_mm2 + self.rom_mm2 + self.phy_mm2


@dataclass(frozen=True)
class DieSplit:
    """One chip's silicon as dies: a design within the reticle is one die; a larger one is the
    fewest equal dies in a chain, each carrying the ends of the links it terminates."""

    dies: Any
    die_mm2: Any              # one die, link ends included
    link_mm2: Any             # all link ends of the chip
    links: Any
    link_bandwidth: float     # B/s each way per link
    link_power_w: Any         # every link busy at full bandwidth (an upper bound)
    reticle_limited: Any      # split because the design exceeds one reticle


def node_of(hw) -> NodeConstants:
    return NODES[node_name(hw)]


def node_name(hw) -> str:
    """The chip's stated node; chips that state none are modelled as 7 nm."""
    return hw.area.node if hw.area is not None and hw.area.node else "7nm"


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


def memory_phys(hw) -> Any:
    """Off-chip memory PHYs: the stated count, or as many HBM stacks as the off-chip bandwidth
    needs, whichever is more, so bandwidth always costs area."""
    stated = hw.area.phys if hw.area is not None else 0
    kind = backend(hw)
    if kind.offchip_level(hw) is None:
        return stated
    return vmax(stated, ceil(kind.main_memory(hw).bandwidth / HBM_STACK_BANDWIDTH))


def shoreline_mm2(phys) -> Any:
    """The smallest square die whose memory edges hold ``phys`` PHYs side by side."""
    side = phys / MEMORY_EDGES * HBM_SHORELINE_MM
    return side * side


# A chip spec's silicon per (spec, model) object pair: a pure function of the two frozen specs,
# asked three times per step (the TDP check, the price, its die-to-die links).  Arrays over
# design points (``dse.columns``) are not keyed: they are computed each time.
_BREAKDOWNS: ByIdentity[AreaBreakdown] = ByIdentity(32)
_SPLITS: ByIdentity[DieSplit] = ByIdentity(32)


def area_breakdown(hw, model: ModelSpec | None = None) -> AreaBreakdown:
    if isinstance(hw, HardwareBase):
        return _BREAKDOWNS.get((hw, model), None, lambda: _area_breakdown(hw, model))
    return _area_breakdown(hw, model)


def _area_breakdown(hw, model: ModelSpec | None) -> AreaBreakdown:
    node = node_of(hw)
    sram_bytes, rom_bits = onchip_bytes(hw, model)
    sram = sram_bytes * 8 * node.sram_um2_per_bit * 1e-6
    rom = rom_bits / (hw.memory.weights.density * 8) if rom_bits else 0.0  # density is B/mm2
    phys = memory_phys(hw)
    phy = phys * PHY_MM2
    mac = datapath_mm2(hw, node)
    stated = hw.area is not None and hw.area.die is not None
    die = hw.area.die if stated else vmax(mac + sram + rom + phy, shoreline_mm2(phys))
    return AreaBreakdown(mac, sram, rom, phy, die, stated, phys)


def split_dies(silicon_mm2, wafer_scale: bool = False) -> DieSplit:
    """The fewest dies n, each within the reticle, holding ``silicon_mm2`` plus the link ends:
    n dies in a chain have n - 1 links and 2(n - 1) ends, so n * reticle >= silicon + 2(n - 1)
    * end, i.e. n = ceil((silicon - 2 end) / (reticle - 2 end)).  A wafer-scale engine is one
    die stitched across reticles by design, never split."""
    end = D2D_LINK_END_MM2
    if wafer_scale:
        return DieSplit(1, silicon_mm2, 0.0, 0, D2D_BANDWIDTH, 0.0, False)
    dies = vmax(ceil((silicon_mm2 - 2 * end) / (RETICLE_MM2 - 2 * end)), 1)
    links = dies - 1
    link_mm2 = 2 * links * end
    power = links * D2D_BANDWIDTH * 8 * D2D_PJ_PER_BIT * 1e-12
    return DieSplit(dies, (silicon_mm2 + link_mm2) / dies, link_mm2, links, D2D_BANDWIDTH, power,
                    where(dies > 1, True, False))


def chip_dies(hw, model: ModelSpec | None = None) -> DieSplit:
    if isinstance(hw, HardwareBase):
        return _SPLITS.get((hw, model), None, lambda: _chip_dies(hw, model))
    return _chip_dies(hw, model)


def _chip_dies(hw, model: ModelSpec | None) -> DieSplit:
    wafer_scale = hw.area is not None and hw.area.wafer_scale
    return split_dies(area_breakdown(hw, model).die_mm2, wafer_scale)


def tdp_note(hw, power_w: float) -> str | None:
    if power_w > hw.power.tdp:
        return (f"average power {power_w:.0f} W exceeds the {hw.power.tdp:.0f} W TDP of {hw.name}: "
                f"the chip would throttle, so this throughput is optimistic")
    return None


def reticle_note(name: str, dies: int, die_mm2: float) -> str | None:
    """Said wherever a chip's silicon is more than one reticle can print."""
    if dies <= 1:
        return None
    return (f"{name}'s silicon exceeds one {RETICLE_MM2:.0f} mm2 reticle: {dies} dies of "
            f"{die_mm2:,.0f} mm2 joined by die-to-die links")


def annotate(result, hw, model: ModelSpec | None = None):
    """The result with its silicon (area, dies, reticle) and, where exceeded, a TDP warning
    (``economics.system.price`` says when the silicon spans several dies: a merchant chip's
    datasheet can replace the modelled dies)."""
    split = chip_dies(hw, model)
    notes = tuple(n for n in (*result.notes, tdp_note(hw, result.power_w)) if n)
    return result.replaced(area_mm2=area_breakdown(hw, model).die_mm2 + split.link_mm2,
                   die_mm2=split.die_mm2, dies=int(split.dies), reticle_limited=bool(split.reticle_limited),
                   notes=notes)
