"""One module per block family; each lowers its block into ops on a ``LoweringContext``.

``MIXERS`` maps a mixer kind to ``lower(ctx, x, layer, kind) -> Tensor`` and ``FFNS`` an FFN
kind to ``lower(ctx, x, layer) -> Tensor``; the kind names are those of ``ModelSpec``.
"""
from __future__ import annotations

from accelsim.model.blocks import attention, hyena, mamba1, mamba2, mla, mlgru, mlp, moe, rglru, rwkv7

MIXERS = {
    "attention": attention.lower,
    "mla": mla.lower,
    "mamba1": mamba1.lower,
    "mamba2": mamba2.lower,
    "rglru": rglru.lower,
    "mlgru": mlgru.lower,
    "rwkv7": rwkv7.lower,
    "hyena": hyena.lower,
}

FFNS = {
    "mlp": mlp.lower,
    "moe": moe.lower,
}
