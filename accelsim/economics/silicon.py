"""What silicon costs: gross dies per 300 mm wafer, yield (Poisson, Murphy, negative binomial)
and the price of one good die.  Areas come from ``accelsim.hardware.area``; the per-node prices
and defect densities from ``accelsim.economics.tables``.

Every function works on one design point (floats) and on many (numpy arrays), like the area
model, so a sweep prices its points with the same formulas as ``run``.
"""
from __future__ import annotations

import math

from accelsim.economics.tables import NodeEconomics, YieldModel
from accelsim.hardware.arraymath import exp, safe_divisor, sqrt, vmax, where

WAFER_DIAMETER_MM = 300.0


def dies_per_wafer(die_mm2, diameter_mm: float = WAFER_DIAMETER_MM):
    """Gross dies per wafer: wafer area over die area, less the partial dies lost along the edge
    (the term pi*d / sqrt(2*A); de Vries, 'Investigating the die per wafer formula', IEEE Trans.
    Semicond. Manuf. 2005).  Never negative."""
    r = diameter_mm / 2
    return vmax(math.pi * r * r / die_mm2 - math.pi * diameter_mm / sqrt(2 * die_mm2), 0.0)


def _defects(die_mm2, defects_per_cm2):
    """Expected defects on one die, A*D0 (area in cm2)."""
    return die_mm2 / 100.0 * defects_per_cm2


def poisson_yield(die_mm2, defects_per_cm2):
    """Y = exp(-A*D0): defects land independently (the most pessimistic of the three)."""
    return exp(-_defects(die_mm2, defects_per_cm2))


def murphy_yield(die_mm2, defects_per_cm2):
    """Y = ((1 - exp(-A*D0)) / (A*D0))^2 (Murphy, Proc. IEEE 1964): defect density varies over
    the wafer with a triangular distribution."""
    ad = _defects(die_mm2, defects_per_cm2)
    safe = safe_divisor(ad, ad == 0)
    return where(ad == 0, 1.0, ((1 - exp(-safe)) / safe) ** 2)


def negative_binomial_yield(die_mm2, defects_per_cm2, alpha: float):
    """Y = (1 + A*D0/alpha)^-alpha (Stapper): defects cluster, more so for small ``alpha``;
    alpha -> infinity gives Poisson back."""
    return (1 + _defects(die_mm2, defects_per_cm2) / alpha) ** -alpha


def die_yield(die_mm2, node: NodeEconomics, model: YieldModel):
    if model == "poisson":
        return poisson_yield(die_mm2, node.defect_density)
    if model == "murphy":
        return murphy_yield(die_mm2, node.defect_density)
    return negative_binomial_yield(die_mm2, node.defect_density, node.clustering)


def good_die_usd(die_mm2, node: NodeEconomics, model: YieldModel, wafer_usd: float | None = None,
                 wafer_scale: bool = False):
    """Price of one good die: the wafer over its good dies.  A wafer-scale engine is one die per
    wafer whose defects are routed around by spare cores, so it costs one wafer."""
    wafer = wafer_usd if wafer_usd is not None else node.wafer_price
    if wafer_scale:
        return wafer
    good = dies_per_wafer(die_mm2) * die_yield(die_mm2, node, model)
    # A die larger than the wafer has no good copies; the reticle split keeps real designs
    # far from this, so it only guards a hand-written config.
    return where(good > 0, wafer / safe_divisor(good, good <= 0), math.inf)
