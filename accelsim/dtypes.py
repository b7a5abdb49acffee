"""Numeric formats: storage width and what kind of arithmetic a matmul in that format needs."""
from __future__ import annotations

import math
from typing import Literal

DType = Literal["fp32", "bf16", "fp16", "fp8", "int8", "int4", "ternary"]
DTYPES: tuple[str, ...] = ("fp32", "bf16", "fp16", "fp8", "int8", "int4", "ternary")

# Ternary {-1, 0, +1} carries log2(3) bits of information; packed storage formats reach
# ~1.6 bits (5 trits per byte).  source: Ma et al., "The Era of 1-bit LLMs", arXiv 2402.17764.
_BITS = {"fp32": 32.0, "bf16": 16.0, "fp16": 16.0, "fp8": 8.0, "int8": 8.0, "int4": 4.0,
         "ternary": math.log2(3)}


def bits(dtype: str) -> float:
    return _BITS[dtype]


def nbytes(dtype: str) -> float:
    return _BITS[dtype] / 8.0


def reduction_dtype(dtype: str) -> str:
    """The format tensor-parallel partial sums are reduced in: never below 16 bits.  An 8-bit
    engine's matmuls write 16-bit results (fp8 in, bf16 out) and its all-reduces sum those:
    NCCL had no 8-bit floating-point reduction type before 2.24 (pytorch/pytorch pull 152706),
    and summing 8-bit partials would throw away the precision the accumulators kept."""
    return dtype if _BITS[dtype] >= 16 else "bf16"


def compute_dtype(weight: str, activation: str) -> str:
    """The datapath a matmul runs on: the wider of its two operands (ternary weights with int8
    activations run on an add-only int8 datapath; bf16 x fp8 runs at bf16)."""
    if weight == "ternary":
        return "ternary"
    return max((weight, activation), key=lambda d: _BITS[d])
