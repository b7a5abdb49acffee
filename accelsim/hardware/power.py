"""Chip power: idle power, dynamic power that rises with the use of each unit, a cap.

A chip draws its idle (static) power whenever it is powered.  On top of that, every op adds
two kinds of dynamic energy:

* **events**: MACs, vector ops and bytes at each memory level times their energy per event
  (``energy:`` and each level's ``energy``, the device-level figures of the energy tables);
* **activity**: while a unit works, the chip around it is switching too -- operand delivery
  through register files and shared memory, clock trees, control, the network on chip, the
  memory controllers and PHYs -- which the bare per-event figures leave out (0.084 pJ for a
  bf16 MAC is the multiplier alone; a compute-bound H100 draws its 700 W TDP).  Each unit
  ``u`` (``compute`` and each memory level) draws ``active[u]`` watts for the time it is busy
  (``Terms.compute_s`` and ``Terms.memory_s``), so dynamic power follows the utilisation of
  compute and of each memory level.

``power.active`` gives these watts per chip where a chip was calibrated against measured power
(``docs/validation.md``, "Power"); elsewhere one stated default rule sets them from the TDP:
``ACTIVE_SHARE`` of (TDP - idle) for compute, the off-chip level and each on-chip level, the
shares calibrated on the H100 (no per-chip factor).  ``power.static`` is the idle power:
measured where a source exists, else ``IDLE_SHARE`` of the TDP.

The average power of a step is idle + dynamic energy / step time.  A chip cannot draw more
than its cap, min(TDP, ``power.limit``): when a step would, the clock drops (DVFS) until it fits,
so the step stretches by (dynamic power asked) / (cap - idle) with its dynamic energy kept
(conservative: lower voltage would save a little).  A compute-bound step, which draws the most,
slows by the capped share; a memory-bound one, drawing less than the cap, does not move.

Node components outside the chips (host CPUs, DRAM, NICs, fans, switches: ``power.node``)
join system-level figures only (``Result.system``), never a chip's power.
"""
from __future__ import annotations

from typing import Any

from accelsim.graph import Op
from accelsim.hardware.arraymath import vmax
from accelsim.hardware.base import Terms

# Default rule for chips without their own ``power.active``: watts each unit draws at full use,
# as a share of (TDP - idle).  Calibrated on the H100 SXM against the ML.ENERGY Llama-3.1-8B
# rows (calibration set chosen by model, docs/validation.md "Power"): a compute-bound prefill
# reaches the TDP (compute 1.0); a memory-bound batch-8 decode draws ~486 W of 700 W (off-chip
# memory); the L2 carries little of it (on-chip levels).  Compute 0.68, not 0.70, since the
# 16-bit datapath runs at its measured share (``efficiency.datapath``, 80 % of peak, faster than
# the fitted FP8 share it used to borrow): at 0.70 that prefill asked 707 W and the cap throttled
# a rate already measured under the cap; at 0.68 it draws 694 W.
ACTIVE_SHARE = {"compute": 0.68, "offchip": 0.6, "onchip": 0.1}
# Default idle power where no measurement exists: the H100's measured idle over its TDP
# (69-73 W per GPU by nvidia-smi, refdata measured_energy.csv, over 700 W).
IDLE_SHARE = 0.1


def active_w(hw: Any, levels: tuple[str, ...], offchip: str | tuple[str, ...] | None) -> dict[str, Any]:
    """Watts each unit of ``hw`` draws while busy: ``power.active`` where given, else the
    default rule (``ACTIVE_SHARE`` of TDP - idle).  ``levels`` are the chip's memory levels
    that have a bandwidth, ``offchip`` the one(s) across the chip boundary (None: all on chip)."""
    outside = (offchip,) if isinstance(offchip, str) else (offchip or ())
    given = hw.power.active or {}
    headroom = hw.power.tdp - hw.power.static
    units = {"compute": ACTIVE_SHARE["compute"] * headroom}
    for level in levels:
        units[level] = ACTIVE_SHARE["offchip" if level in outside else "onchip"] * headroom
    return {unit: given.get(unit, default) for unit, default in units.items()}


def with_activity(op: Op, terms: Terms, p: dict[str, Any], kept: Any = 1.0,
                  compute_share: Any = 1.0, memory_share: Any = 1.0) -> Terms:
    """``terms`` with each busy unit's activity energy as a component of its own (``compute
    activity``, ``<level> activity``, beside the per-event components): compute for the time
    the FLOPs it performs (``kept``: the share a zero-skipping datapath does) take at the unit's
    achieved rate (``terms.peak_flops`` derated; padding a tile with zeros toggles little, so
    padded work draws no activity power), each level for its memory time.  ``compute_share`` and ``memory_share`` are the part of the chip's
    units the op occupies (a hardwired layer region, its share of the SRAM ports); 1 where the
    op has the whole chip."""
    energy = activity_energy(op, terms.energy_j, terms.peak_flops, terms.memory_s, p, kept, compute_share,
                             memory_share)
    return Terms(terms.time_s, terms.compute_s, terms.memory_s, terms.bytes, energy,
                 terms.peak_flops, terms.overhead_s, terms.detail)


def activity_energy(op: Op, energy_j: dict[str, Any], peak_flops: Any, memory_s: dict[str, Any],
                    p: dict[str, Any], kept: Any = 1.0, compute_share: Any = 1.0,
                    memory_share: Any = 1.0) -> dict[str, Any]:
    """``with_activity``'s energy: ``energy_j`` and the activity components, from what it reads
    of the terms (their peak and memory times, never their time or compute time)."""
    active = p["active"]
    energy = dict(energy_j)
    busy = op.flops * kept / (peak_flops * p["eff_compute"]) if op.flops else 0.0
    energy["compute activity"] = active["compute"] * compute_share * busy
    for level, seconds in memory_s.items():
        if level in active:
            energy[f"{level} activity"] = active[level] * memory_share * seconds
    return energy


def host_wait_j(figures: dict[str, Any], chips: int) -> float:
    """Joules above idle the chips draw while they wait through the step's host work: the
    backend's ``host_wait_w`` per chip (absent: none) for ``step_overhead_s``."""
    return float(figures.get("host_wait_w", 0.0) * figures.get("step_overhead_s", 0.0) * chips)


def cap_w(hw: Any) -> Any:
    """The most one chip may draw: its TDP, or the configured power limit below it."""
    limit = hw.power.limit
    return hw.power.tdp if limit is None else limit


def stretch(dynamic_j: Any, busy_s: Any, idle_w: Any, cap: Any) -> Any:
    """How much a step stretches under the cap: 1 when idle + dynamic power fits, else
    (dynamic power asked) / (cap - idle).  ``dynamic_j`` and ``busy_s`` are one chip's (numbers,
    or arrays over design points)."""
    asked = dynamic_j / busy_s
    return vmax(asked / (cap - idle_w), 1.0)


def node_power(hw: Any, chips: int, chip_w: float) -> dict[str, Any]:
    """System-level figures: the chips' power plus the node components of the nodes they fill
    (``power.node``); empty when the config gives no node."""
    node = hw.power.node
    if node is None:
        return {}
    nodes = -(-chips // node.chips)
    host = nodes * node.host
    return {"nodes": nodes, "node_host_w": host, "system_power_w": chips * chip_w + host}
