"""The float32 bit layout the log histograms bin by (lib/stats/loghist.py).

A float32 is a sign bit, 8 exponent bits (biased by 127) and 23 mantissa bits. Read as an int32,
the bits of a non-negative float increase with its value, so the exponent and the top k
mantissa bits, `bits >> (FLOAT32_MANTISSA_BITS - k)`, number bins of 2**k per octave.
"""
from __future__ import annotations

import numpy as np
import torch

_FLOAT32 = np.finfo(np.float32)
FLOAT32_MANTISSA_BITS = int(_FLOAT32.nmant)  # 23
FLOAT32_EXPONENT_BIAS = int(_FLOAT32.maxexp) - 1  # 127: the exponent field of 1.0
FLOAT32_ABS_MASK = (1 << (int(_FLOAT32.nexp) + FLOAT32_MANTISSA_BITS)) - 1  # all but the sign


def bits_to_float(bits: torch.Tensor) -> torch.Tensor:
    """The float32 values of int32 bit patterns, as float64."""
    return bits.to(torch.int32).view(torch.float32).double()


def float_bits(value: float) -> int:
    """The bit pattern of `value` rounded to float32, as an int."""
    return int(torch.tensor([value], dtype=torch.float32).view(torch.int32))
