"""The sparsity a run asks for (ratio, N:M, variant), and every decision that turns scores into
masks: per row, per matrix, N:M groups, Wanda's variant, and the blockwise choice that the OBS
update (lib/pruning/obs.py) makes while it walks the columns. lib/pruning/masks.py holds the pure builders.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lib.run.errors import UserError

if TYPE_CHECKING:
    import torch


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

    def with_ratio(self, ratio: float) -> Sparsity:
        """The same kind of sparsity at another ratio (a per-block target; unstructured)."""
        if self.is_nm:
            raise ValueError("an N:M pattern fixes its ratio")
        return Sparsity(ratio=ratio, variant=self.variant)

    def mask(self, score: torch.Tensor, scope: str) -> torch.Tensor:
        """Boolean prune mask for one weight matrix's scores.

        scope "row" compares weights within each output row (Wanda); "matrix" uses one
        threshold over the whole matrix (magnitude). N:M always works per group of M."""
        from lib.pruning import masks

        if self.is_nm:
            return masks.nm_mask(score, self.n, self.m)
        if self.variant:
            return masks.variant_mask(score, self.ratio)[0]
        if scope == "matrix":
            return masks.matrix_mask(score, self.ratio)
        if scope != "row":
            raise ValueError(f"scope {scope!r} has no whole-matrix mask")
        return masks.row_mask(score, self.ratio)

    def block_size(self, preferred: int) -> int:
        """Columns per OBS block: N:M groups never straddle two blocks."""
        if self.is_nm and preferred % self.m:
            return max(self.m, preferred - preferred % self.m)
        return preferred

    def blockwise(self, rows: int) -> BlockwiseChoice:
        return BlockwiseChoice(self, rows)


class BlockwiseChoice:
    """The mask chosen block by block during an OBS walk over one matrix's columns.

    Unstructured: each block's lowest scores, jointly over the block, with cumulative
    rounding, so the matrix loses exactly int(ratio * rows * columns) weights. N:M: each group
    of M columns when the walk reaches it (`per_group`), the N highest of each row kept."""

    def __init__(self, sparsity: Sparsity, rows: int):
        self.sparsity = sparsity
        self.rows = rows
        self.pruned = 0

    @property
    def per_group(self) -> bool:
        return self.sparsity.is_nm

    def block_mask(self, score: torch.Tensor, stop: int) -> torch.Tensor:
        """Unstructured: the mask of the block whose last column is `stop` - 1."""
        from lib.pruning import masks

        k = int(self.sparsity.ratio * self.rows * stop) - self.pruned
        mask = masks.lowest_mask(score, k)
        self.pruned += int(mask.sum())
        return mask

    def group_mask(self, score: torch.Tensor) -> torch.Tensor:
        """N:M: the mask of one group of M columns."""
        from lib.pruning import masks

        mask = masks.nm_mask(score, self.sparsity.n, self.sparsity.m)
        self.pruned += int(mask.sum())
        return mask


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
