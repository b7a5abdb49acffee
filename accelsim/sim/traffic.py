"""Off-chip traffic of a GEMM given how much on-chip memory can hold its operands.

One rule serves the GPU's L2 and a systolic chip's buffer: if the smaller operand fits in half
the on-chip capacity (the other half streams the larger one), each operand crosses the off-chip
interface once; otherwise the smaller one is re-fetched once per capacity-sized block of the
larger.  The count is continuous in the operand sizes up to the real cliff where reuse is lost.
"""
from __future__ import annotations

from accelsim.hardware.arraymath import ceil_div, vmax, vmin, where


def gemm_offchip_bytes(a_bytes, b_bytes, c_bytes, capacity):
    """Works on one design point or elementwise on arrays of them (``capacity`` may vary)."""
    small, large = vmin(a_bytes, b_bytes), vmax(a_bytes, b_bytes)
    half = capacity / 2
    refetch = ceil_div(large, half)
    return where(small <= half, a_bytes + b_bytes + c_bytes, large + small * refetch + c_bytes)
