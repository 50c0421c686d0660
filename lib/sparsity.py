"""The sparsity a run asks for (ratio, N:M, variant) and how it turns scores into masks."""
from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from lib import masks
from lib.errors import UserError


@dataclass(frozen=True)
class Sparsity:
    ratio: float
    n: int = 0
    m: int = 0
    variant: bool = False

    @property
    def is_nm(self) -> bool:
        return self.m > 0

    @property
    def type_name(self) -> str:
        return f"{self.n}:{self.m}" if self.is_nm else "unstructured"

    def mask(self, score: torch.Tensor, scope: str) -> torch.Tensor:
        """Boolean prune mask for one weight matrix's scores.

        scope "row" compares weights within each output row (Wanda); "matrix" uses one
        threshold over the whole matrix (magnitude). N:M always works per group of M."""
        if self.is_nm:
            return masks.nm_mask(score, self.n, self.m)
        if self.variant:
            return masks.variant_mask(score, self.ratio)[0]
        if scope == "matrix":
            return masks.matrix_mask(score, self.ratio)
        return masks.row_mask(score, self.ratio)


def parse_sparsity(sparsity_type: str, ratio: float, use_variant: bool) -> Sparsity:
    """Validate --sparsity_type/--sparsity_ratio/--use_variant into a Sparsity."""
    if not 0 <= ratio < 1:
        raise UserError(f"--sparsity_ratio {ratio} is outside [0, 1)")
    if sparsity_type == "unstructured":
        return Sparsity(ratio=ratio, variant=use_variant)
    match = re.fullmatch(r"(\d+):(\d+)", sparsity_type)
    if not match:
        raise UserError(f"--sparsity_type {sparsity_type}: use unstructured or N:M such as 2:4")
    n, m = int(match[1]), int(match[2])
    if not 0 < n < m:
        raise UserError(f"--sparsity_type {sparsity_type}: N:M needs 0 < N < M, e.g. 2:4 or 4:8")
    nm_ratio = 1 - n / m
    if ratio != 0 and abs(ratio - nm_ratio) > 1e-9:
        raise UserError(f"--sparsity_ratio {ratio} conflicts with {sparsity_type}, which prunes "
                        f"{nm_ratio:g}; pass --sparsity_ratio {nm_ratio:g} or leave it out")
    if use_variant:
        raise UserError("--use_variant only applies to unstructured sparsity; drop it for N:M")
    return Sparsity(ratio=nm_ratio, n=n, m=m)
