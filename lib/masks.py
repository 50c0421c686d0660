"""Mask builders: pure functions from a score matrix to a boolean prune mask.

Every builder returns a bool tensor shaped like `score` in which True marks a weight to
zero. Ties are broken as a stable sort breaks them (the lower index is pruned first), so
results are deterministic and exact in count. The row and matrix masks find the k-th smallest
score by selection (kthvalue, linear time) instead of sorting every row, and N:M groups rank
their few members by comparison: the same masks as a stable argsort, several times faster.
"""
from __future__ import annotations

import torch


def _lowest_k(score: torch.Tensor, k: int) -> torch.Tensor:
    """Along the last dimension, the k lowest scores (ties: lower index first), by selection:
    everything up to the k-th smallest value; where that takes more than k (values tied with
    the k-th), those rows keep only as many of the tied values as needed, in index order."""
    if k <= 0:
        return torch.zeros_like(score, dtype=torch.bool)
    if k >= score.shape[-1]:
        return torch.ones_like(score, dtype=torch.bool)
    kth = score.kthvalue(k, dim=-1, keepdim=True).values
    mask = score <= kth
    crowded = mask.sum(dim=-1) > k  # rare with real scores; always handled exactly
    if bool(crowded.any()):
        rows, kth_rows = score[crowded], kth[crowded]
        below, tied = rows < kth_rows, rows == kth_rows
        needed = k - below.sum(dim=-1, keepdim=True)
        mask[crowded] = below | (tied & (tied.cumsum(dim=-1) <= needed))
    return mask


def row_mask(score: torch.Tensor, ratio: float) -> torch.Tensor:
    """Prune int(C * ratio) lowest scores in every output row (Wanda's comparison group)."""
    return _lowest_k(score, int(score.shape[1] * ratio))


def lowest_mask(score: torch.Tensor, k: int) -> torch.Tensor:
    """Prune the k lowest scores of the whole tensor."""
    return _lowest_k(score.reshape(-1), k).reshape(score.shape)


def matrix_mask(score: torch.Tensor, ratio: float) -> torch.Tensor:
    """Prune int(numel * ratio) lowest scores of the whole matrix (magnitude pruning)."""
    return lowest_mask(score, int(score.numel() * ratio))


PAIRWISE_MAX_M = 16  # up to this group size, ranking by all pairwise comparisons is fastest


def nm_mask(score: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """In each group of m consecutive input columns of each row keep the n highest scores."""
    rows, cols = score.shape
    if cols % m:
        raise ValueError(f"{cols} input columns are not divisible by M={m}")
    groups = score.reshape(rows * cols // m, m)
    if m > PAIRWISE_MAX_M:
        return _lowest_k(groups, m - n).reshape(rows, cols)
    # a member's rank = how many of its group sort before it (lower, or equal and earlier)
    a, b = groups.unsqueeze(2), groups.unsqueeze(1)
    earlier = torch.ones(m, m, dtype=torch.bool, device=score.device).tril(-1)
    before = (b < a) | ((b == a) & earlier)
    return (before.sum(dim=2) < m - n).reshape(rows, cols)


def _variant_counts(sorted_score: torch.Tensor, cumsum: torch.Tensor, alpha: float) -> torch.Tensor:
    """Per row, how many of the lowest scores fit under alpha times the row's total score."""
    limit = cumsum[:, -1:] * alpha
    return (cumsum <= limit).sum(dim=1)


def variant_mask(
    score: torch.Tensor, ratio: float, tol: float = 1e-3, max_iter: int = 60
) -> tuple[torch.Tensor, float]:
    """Wanda's variant: per row, prune the lowest scores whose cumulative sum stays within
    alpha * (row sum); bisect one alpha for the whole matrix until the achieved sparsity is
    within `tol` of `ratio`. Returns the mask and the alpha used.

    Scores must be non-negative. Rows differ in how many weights they lose, which is the
    point of the variant: rows whose score mass is concentrated lose more.
    """
    sorted_score, order = torch.sort(score.double(), dim=1, stable=True)
    cumsum = torch.cumsum(sorted_score, dim=1)
    total = score.numel()
    lo, hi, alpha = 0.0, 1.0, 0.5
    counts = _variant_counts(sorted_score, cumsum, alpha)
    for _ in range(max_iter):
        achieved = counts.sum().item() / total
        if abs(achieved - ratio) <= tol:
            break
        if achieved > ratio:
            hi = alpha
        else:
            lo = alpha
        alpha = (lo + hi) / 2
        counts = _variant_counts(sorted_score, cumsum, alpha)
    ranks = torch.arange(score.shape[1], device=score.device).expand_as(score)
    mask = torch.zeros_like(score, dtype=torch.bool)
    mask.scatter_(1, order, ranks < counts.reshape(-1, 1))
    return mask, alpha
