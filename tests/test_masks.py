"""Mask builders against brute-force loops over small tensors."""
from __future__ import annotations

import pytest
import torch

from lib.pruning import masks


def brute_row(score, ratio):
    rows, cols = score.shape
    k = int(cols * ratio)
    out = torch.zeros(rows, cols, dtype=torch.bool)
    for r in range(rows):
        order = sorted(range(cols), key=lambda c: score[r, c].item())
        for c in order[:k]:
            out[r, c] = True
    return out


def brute_nm(score, n, m):
    rows, cols = score.shape
    out = torch.zeros(rows, cols, dtype=torch.bool)
    for r in range(rows):
        for g in range(0, cols, m):
            group = sorted(range(g, g + m), key=lambda c: score[r, c].item())
            for c in group[: m - n]:
                out[r, c] = True
    return out


@pytest.mark.parametrize("ratio", [0.0, 0.3, 0.5, 0.9])
def test_row_mask_matches_brute_force(ratio):
    score = torch.rand(7, 24, generator=torch.Generator().manual_seed(1))
    assert torch.equal(masks.row_mask(score, ratio), brute_row(score, ratio))


def test_matrix_mask_matches_brute_force():
    score = torch.rand(6, 10, generator=torch.Generator().manual_seed(2))
    k = int(score.numel() * 0.45)
    threshold = sorted(score.flatten().tolist())[k - 1]
    expected = score <= threshold
    assert torch.equal(masks.matrix_mask(score, 0.45), expected)
    assert masks.matrix_mask(score, 0.45).sum() == k


@pytest.mark.parametrize("n,m", [(2, 4), (4, 8), (1, 4), (3, 4)])
def test_nm_mask_matches_brute_force(n, m):
    score = torch.rand(5, 16, generator=torch.Generator().manual_seed(3))
    mask = masks.nm_mask(score, n, m)
    assert torch.equal(mask, brute_nm(score, n, m))
    kept_per_group = (~mask).reshape(5, 16 // m, m).sum(-1)
    assert torch.all(kept_per_group == n)


def test_masks_exact_counts_under_ties():
    score = torch.ones(4, 8)
    assert masks.row_mask(score, 0.5).sum(1).tolist() == [4, 4, 4, 4]
    assert masks.matrix_mask(score, 0.25).sum() == 8
    assert torch.all(masks.nm_mask(score, 2, 4).reshape(4, 2, 4).sum(-1) == 2)


@pytest.mark.parametrize("levels", [2, 5])
def test_masks_break_heavy_ties_like_a_stable_sort(levels):
    """Quantized weights tie often: the lower index must go first, exactly as sorted() does."""
    gen = torch.Generator().manual_seed(levels)
    score = torch.randint(0, levels, (9, 40), generator=gen).float()
    for ratio in (0.25, 0.5, 0.8):
        assert torch.equal(masks.row_mask(score, ratio), brute_row(score, ratio))
        k = int(score.numel() * ratio)
        flat = sorted(range(score.numel()), key=lambda i: score.flatten()[i].item())[:k]
        expected = torch.zeros(score.numel(), dtype=torch.bool)
        expected[flat] = True
        assert torch.equal(masks.matrix_mask(score, ratio), expected.reshape(score.shape))
    for n, m in ((2, 4), (1, 4), (4, 8), (6, 20)):  # 20 > PAIRWISE_MAX_M: the kthvalue path
        assert torch.equal(masks.nm_mask(score, n, m), brute_nm(score, n, m)), (n, m)


def test_nm_mask_rejects_indivisible_columns():
    with pytest.raises(ValueError):
        masks.nm_mask(torch.rand(2, 6), 2, 4)


@pytest.mark.parametrize("ratio", [0.2, 0.5, 0.7])
def test_variant_mask_hits_target_and_prunes_prefixes(ratio):
    gen = torch.Generator().manual_seed(4)
    score = torch.rand(64, 96, generator=gen) ** 3 * torch.rand(64, 1, generator=gen)
    mask, alpha = masks.variant_mask(score, ratio)
    assert abs(mask.float().mean().item() - ratio) <= 1e-3
    for r in range(score.shape[0]):
        row = score[r].double()
        ordered = sorted(range(row.numel()), key=lambda c: row[c].item())
        running, expected = 0.0, set()
        for c in ordered:
            running += row[c].item()
            if running > alpha * row.sum().item():
                break
            expected.add(c)
        assert set(torch.nonzero(mask[r]).flatten().tolist()) == expected


@pytest.mark.parametrize("k", [1, 17, 100, 199])
def test_cpu_radix_select_matches_kthvalue_path(monkeypatch, k):
    """The CPU kernel against the torch path: signed values, +-0, heavy ties, one huge bucket."""
    if masks._radix_lowest_k is None:
        pytest.skip("numba not installed")
    gen = torch.Generator().manual_seed(k)
    score = torch.randn(6, 200, generator=gen)
    score[0] = torch.randint(-3, 4, (200,), generator=gen).float()  # ties, including +0
    score[1, ::3] = -0.0
    score[2] = 1 + torch.rand(200, generator=gen) * 1e-6  # every key in one radix bucket
    score[3] = torch.logspace(-30, 30, 200)
    fast = masks._lowest_k(score, k)
    assert fast.sum(dim=1).tolist() == [k] * 6
    monkeypatch.setattr(masks, "_radix_lowest_k", None)
    assert torch.equal(fast, masks._lowest_k(score, k))
