"""Mask builders: pure functions from a score matrix to a boolean prune mask.

Every builder returns a bool tensor shaped like `score` in which True marks a weight to
zero. Ties are broken as a stable sort breaks them (the lower index is pruned first), so
results are deterministic and exact in count. The row and matrix masks find the k-th smallest
score by selection instead of sorting every row (on the CPU a radix select over the float
bits, else kthvalue), and N:M groups rank their few members by comparison: the same masks as a
stable argsort, several times faster.
"""
from __future__ import annotations

import numpy as np
import torch

try:  # the CPU selection kernel; torch's kthvalue otherwise (and on CUDA)
    from numba import njit, prange
except ImportError:  # pragma: no cover - numba is in requirements.txt
    njit = None


def _lowest_k(score: torch.Tensor, k: int) -> torch.Tensor:
    """Along the last dimension, the k lowest scores (ties: lower index first), by selection:
    everything up to the k-th smallest value; where that takes more than k (values tied with
    the k-th), those rows keep only as many of the tied values as needed, in index order."""
    if k <= 0:
        return torch.zeros_like(score, dtype=torch.bool)
    if k >= score.shape[-1]:
        return torch.ones_like(score, dtype=torch.bool)
    if _radix_lowest_k is not None and score.device.type == "cpu" and score.dtype == torch.float32:
        rows = score.reshape(-1, score.shape[-1]).contiguous()
        mask = torch.empty(rows.shape, dtype=torch.bool)
        _radix_lowest_k(rows.view(torch.int32).numpy(), k, mask.numpy())
        return mask.reshape(score.shape)
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


if njit is not None:
    RADIX_BITS = 12  # first pass: a histogram of the top 12 bits of each row's keys

    @njit(cache=True, inline="always")
    def _key(bits):  # pragma: no cover
        """float32 bits -> uint32 that sorts like the float (-0.0 counted as +0.0)."""
        if bits == -2147483648:
            bits = 0
        u = np.uint32(bits)
        return ~u if bits < 0 else u | np.uint32(0x80000000)

    @njit(parallel=True, cache=True, nogil=True)
    def _radix_lowest_k(bits, k, out):  # pragma: no cover
        """out[r] = the k lowest of row r of float32 `bits` (ties: lower index first), the
        same mask as `_lowest_k`'s torch path. Per row: a histogram of the keys' top bits
        finds the bucket holding the k-th smallest, a sort of that bucket alone finds it,
        and a last pass marks everything below it and the first tied values needed."""
        rows, cols = bits.shape
        shift = 32 - RADIX_BITS
        for r in prange(rows):
            keys = np.empty(cols, dtype=np.uint32)
            hist = np.zeros(1 << RADIX_BITS, dtype=np.int32)
            for c in range(cols):
                keys[c] = _key(bits[r, c])
                hist[keys[c] >> shift] += 1
            below, bucket = 0, 0
            while below + hist[bucket] < k:
                below += hist[bucket]
                bucket += 1
            members = np.empty(hist[bucket], dtype=np.uint32)
            n = 0
            for c in range(cols):
                if keys[c] >> shift == bucket:
                    members[n] = keys[c]
                    n += 1
            members.sort()
            kth = members[k - below - 1]
            ties = k - below  # how many values equal to kth are pruned: those first in the row
            for m in range(n):
                if members[m] < kth:
                    ties -= 1
            for c in range(cols):
                lower = keys[c] < kth
                tied = (keys[c] == kth) & (ties > 0)
                out[r, c] = lower | tied
                ties -= tied
else:  # pragma: no cover
    _radix_lowest_k = None
