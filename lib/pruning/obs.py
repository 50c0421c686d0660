"""Optimal Brain Surgeon weight updates: SparseGPT and Wanda's ablations.

Given a linear layer's weights W [rows, C] and the Hessian H = (2/n) * sum x x^T of its
inputs, pruning column by column and spreading each pruned weight's error over the columns
not yet visited (through the upper Cholesky factor of H^-1) keeps W X close to the dense
output. Columns go in blocks of BLOCK_SIZE: inside a block the update is a rank-1 step per
column; after the block, one matrix product carries the block's error to all later columns.

Which weights to prune is the method's score, and how scores become masks is lib/pruning/sparsity.py's:
  * "fixed": one mask chosen up front from the method's score (Wanda's *_seq ablations);
  * "blockwise": the mask re-chosen on the already-updated weights, jointly over each block's
    columns for unstructured sparsity, per group of M columns for N:M (SparseGPT, *_iter).
"""
from __future__ import annotations

import logging
from typing import Callable

import torch

from lib.pruning.methods import OBS_BLOCK_SIZE
from lib.pruning.sparsity import Sparsity
from lib.stats.layerwrapper import ColumnSlice

log = logging.getLogger(__name__)

BLOCK_SIZE = OBS_BLOCK_SIZE


def obs_prune(weight: torch.Tensor, hinv: torch.Tensor, sparsity: Sparsity,
              fixed_mask: torch.Tensor | None = None,
              block_score: Callable[[torch.Tensor, int, int, torch.Tensor], torch.Tensor]
              | None = None, block_size: int = BLOCK_SIZE) -> torch.Tensor:
    """Prune and OBS-update `weight` (float32, modified in place and returned).

    hinv: upper Cholesky factor of H^-1. Exactly one of `fixed_mask` (True = prune) and
    `block_score(W_cols, start, stop, hinv_diag_cols)` (lower = pruned first) is given; with
    the latter, `sparsity.blockwise` decides each block's (or N:M group's) mask."""
    if (fixed_mask is None) == (block_score is None):
        raise ValueError("give exactly one of fixed_mask and block_score")
    rows, cols = weight.shape
    block_size = sparsity.block_size(block_size)
    choice = sparsity.blockwise(rows) if block_score is not None else None
    group = sparsity.m if choice is not None and choice.per_group else 0
    for i1 in range(0, cols, block_size):
        i2 = min(i1 + block_size, cols)
        w1 = weight[:, i1:i2].clone()
        h1 = hinv[i1:i2, i1:i2]
        d1 = torch.diagonal(h1)
        if choice is None:
            mask1 = fixed_mask[:, i1:i2]
        elif not group:
            mask1 = choice.block_mask(block_score(w1, i1, i2, d1), i2)
        else:
            mask1 = torch.zeros_like(w1, dtype=torch.bool)
        errors = torch.zeros_like(w1)
        for i in range(i2 - i1):
            if group and i % group == 0:
                cut = slice(i, i + group)
                mask1[:, cut] = choice.group_mask(block_score(w1[:, cut], i1 + i, i1 + i + group,
                                                              d1[cut]))
            column = w1[:, i]
            kept = torch.where(mask1[:, i], torch.zeros_like(column), column)
            err = (column - kept) / h1[i, i]
            # the rank-1 OBS step: later columns of the block absorb this column's error
            w1[:, i:].sub_(torch.outer(err, h1[i, i:]))
            w1[:, i] = kept
            errors[:, i] = err
        weight[:, i1:i2] = w1
        weight[:, i2:].sub_(errors @ hinv[i1:i2, i2:])
    return weight


def prune_with_obs(weight: torch.Tensor, stat, score: Callable, mode: str, scope: str,
                   sparsity: Sparsity, opts, name: str = "") -> torch.Tensor:
    """A method's OBS pruning of one linear: returns the new float32 weights.

    mode "fixed": the mask comes from `score(weight, stat, opts)` once, compared in `scope`
    like the zeroing methods; mode "blockwise": `score(W_cols, ColumnSlice, opts)` per block
    or N:M group on the updated weights."""
    w = weight.to(torch.float32, copy=True)
    hinv = stat.inverse_cholesky(name)
    w[:, stat.dead] = 0
    if mode == "fixed":
        mask = sparsity.mask(score(w, stat, opts), scope)  # dead inputs score 0: pruned first
        return obs_prune(w, hinv, sparsity, fixed_mask=mask)

    def block_score(cols: torch.Tensor, start: int, stop: int,
                    hinv_diag: torch.Tensor) -> torch.Tensor:
        return score(cols, ColumnSlice(stat, start, stop, hinv_diag), opts)
    return obs_prune(w, hinv, sparsity, block_score=block_score)
