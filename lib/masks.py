"""Mask builders: pure functions from a score matrix to a boolean prune mask.

Every builder returns a bool tensor shaped like `score` in which True marks a weight to
zero. Ties are broken by a stable sort, so results are deterministic and exact in count.
"""
from __future__ import annotations

import torch


def _prune_lowest_per_row(score: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Prune the `counts[r]` lowest scores of each row r."""
    order = torch.argsort(score, dim=1, stable=True)
    ranks = torch.arange(score.shape[1], device=score.device).expand_as(score)
    prune_sorted = ranks < counts.reshape(-1, 1)
    mask = torch.zeros_like(score, dtype=torch.bool)
    mask.scatter_(1, order, prune_sorted)
    return mask


def row_mask(score: torch.Tensor, ratio: float) -> torch.Tensor:
    """Prune int(C * ratio) lowest scores in every output row (Wanda's comparison group)."""
    rows, cols = score.shape
    k = int(cols * ratio)
    counts = torch.full((rows,), k, device=score.device, dtype=torch.long)
    return _prune_lowest_per_row(score, counts)


def lowest_mask(score: torch.Tensor, k: int) -> torch.Tensor:
    """Prune the k lowest scores of the whole tensor."""
    flat = score.reshape(-1)
    mask = torch.zeros(flat.numel(), dtype=torch.bool, device=score.device)
    if k > 0:
        mask[torch.argsort(flat, stable=True)[:k]] = True
    return mask.reshape(score.shape)


def matrix_mask(score: torch.Tensor, ratio: float) -> torch.Tensor:
    """Prune int(numel * ratio) lowest scores of the whole matrix (magnitude pruning)."""
    return lowest_mask(score, int(score.numel() * ratio))


def nm_mask(score: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """In each group of m consecutive input columns of each row keep the n highest scores."""
    rows, cols = score.shape
    if cols % m:
        raise ValueError(f"{cols} input columns are not divisible by M={m}")
    groups = score.reshape(rows * cols // m, m)
    counts = torch.full((groups.shape[0],), m - n, device=score.device, dtype=torch.long)
    return _prune_lowest_per_row(groups, counts).reshape(rows, cols)


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
