"""Numeric formats: storage width and what kind of arithmetic a matmul in that format needs.

Block-scaled formats store each block of ``block`` values as narrow elements plus one shared
scale, so their storage width is ``element bits + scale bits / block`` and every byte count in
accelsim (weights, activations, KV cache) includes the scales:

* ``nvfp4``: FP4 (E2M1) elements in blocks of 16 sharing an FP8 (E4M3) scale: 4 + 8/16 = 4.5 bits.
  source: NVIDIA, "Introducing NVFP4 for Efficient and Accurate Low-Precision Inference"
  (developer.nvidia.com blog, 2025): 16-value micro-blocks, E4M3 block scale (plus one FP32
  scale per tensor, negligible and not counted).
* ``mxfp4`` / ``mxfp6`` / ``mxfp8``: FP4 (E2M1), FP6 (E2M3/E3M2), FP8 (E4M3/E5M2) elements in
  blocks of 32 sharing an 8-bit power-of-two (E8M0) scale: 4.25, 6.25 and 8.25 bits.
  source: OCP Microscaling Formats (MX) Specification v1.0 (Open Compute Project, 2023), sec. 5.
"""
from __future__ import annotations

import math
from typing import Literal

DType = Literal["fp32", "bf16", "fp16", "fp8", "int8", "int4", "ternary",
                "nvfp4", "mxfp4", "mxfp6", "mxfp8"]
DTYPES: tuple[str, ...] = ("fp32", "bf16", "fp16", "fp8", "int8", "int4", "ternary",
                           "nvfp4", "mxfp4", "mxfp6", "mxfp8")

# (element bits, block size, scale bits) of the block-scaled formats (sources in the docstring).
BLOCK_SCALED: dict[str, tuple[int, int, int]] = {
    "nvfp4": (4, 16, 8), "mxfp4": (4, 32, 8), "mxfp6": (6, 32, 8), "mxfp8": (8, 32, 8),
}

# Ternary {-1, 0, +1} carries log2(3) bits of information; packed storage formats reach
# ~1.6 bits (5 trits per byte).  source: Ma et al., "The Era of 1-bit LLMs", arXiv 2402.17764.
_ELEMENT_BITS = {"fp32": 32.0, "bf16": 16.0, "fp16": 16.0, "fp8": 8.0, "int8": 8.0, "int4": 4.0,
                 "ternary": math.log2(3), **{d: float(e) for d, (e, _, _) in BLOCK_SCALED.items()}}
_BITS = {d: e + (BLOCK_SCALED[d][2] / BLOCK_SCALED[d][1] if d in BLOCK_SCALED else 0.0)
         for d, e in _ELEMENT_BITS.items()}
_FLOAT = {"fp32", "bf16", "fp16", "fp8", *BLOCK_SCALED}


def bits(dtype: str) -> float:
    """Storage bits per value, block scales included."""
    return _BITS[dtype]


def element_bits(dtype: str) -> float:
    """Bits of one value's element alone: the width a matrix datapath multiplies (the block
    scales are applied per block, outside the multipliers)."""
    return _ELEMENT_BITS[dtype]


def nbytes(dtype: str) -> float:
    return _BITS[dtype] / 8.0


def is_float(dtype: str) -> bool:
    """Floating-point formats (block-scaled ones included) need a floating-point datapath."""
    return dtype in _FLOAT


def reduction_dtype(dtype: str) -> str:
    """The format tensor-parallel partial sums are reduced in: never below 16 bits.  An 8-bit
    engine's matmuls write 16-bit results (fp8 in, bf16 out) and its all-reduces sum those:
    NCCL had no 8-bit floating-point reduction type before 2.24 (pytorch/pytorch pull 152706),
    and summing 8-bit partials would throw away the precision the accumulators kept."""
    return dtype if _BITS[dtype] >= 16 else "bf16"


def compute_dtype(weight: str, activation: str) -> str:
    """The datapath a matmul runs on: the wider of its two operands (ternary weights with int8
    activations run on an add-only int8 datapath; bf16 x fp8 runs at bf16; nvfp4 weights with
    fp8 activations run at fp8)."""
    if weight == "ternary":
        return "ternary"
    return max((weight, activation), key=lambda d: _BITS[d])
