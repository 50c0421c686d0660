"""The one layer-by-layer pruning loop shared by every method.

For each decoder block: hooks gather the method's statistic while the calibration samples run
through the unpruned block, the method scores each pruned matrix (a Linear's weight, or one
expert's matrix of a fused experts module: lib/arch/matrices.py), the block's sparsity turns
scores into masks, weights are zeroed (or OBS-updated), and the samples run again through the
pruned block to become the next block's inputs (so later blocks calibrate on the pruned model,
as in Wanda). Each block has its own target sparsity (uniform unless a plan says otherwise).
"""
from __future__ import annotations

import logging
from typing import Sequence

import torch
from torch import nn

from lib.arch.blocks import blocks_prefix, decoder_layers
from lib.arch.matrices import BlockParts, block_parts, count_zeros, sparsity_of
from lib.pruning.methods import Method
from lib.pruning.obs import prune_with_obs
from lib.pruning.replay import BlockStore, BlockWalk
from lib.pruning.sparsity import Sparsity
from lib.run.errors import UserError
from lib.run.options import Settings

log = logging.getLogger(__name__)


def find_linears(module: nn.Module) -> dict[str, nn.Linear]:
    """The Linears the loop prunes in a block (not an MoE block's routers)."""
    return block_parts(module).linears


@torch.no_grad()
def prune_matrix(weight: torch.Tensor, method: Method, stat, sparsity: Sparsity,
                 settings: Settings, name: str = "") -> None:
    """Prune one (out, in) matrix in place: a Linear's weight or one expert's view."""
    if method.update is not None:
        weight.copy_(prune_with_obs(weight, stat, method.score.fn, method.update,
                                    method.scope_for(settings), sparsity, settings, name))
        return
    score = method.score.fn(weight.float(), stat, settings)
    weight[sparsity.mask(score, method.scope_for(settings))] = 0


def check_nm_fits(parts: Sequence[BlockParts], targets: Sequence[Sparsity]) -> None:
    """N:M groups run along each matrix's inputs, so every input width must divide by M."""
    for index, (block, sparsity) in enumerate(zip(parts, targets)):
        if not sparsity.is_nm:
            continue
        for name, weight in block.matrices().items():
            if weight.shape[1] % sparsity.m:
                raise UserError(
                    f"--sparsity_type {sparsity.type_name}: block {index} {name} has "
                    f"{weight.shape[1]} inputs, not a multiple of {sparsity.m}; "
                    "choose an M that divides every matrix's input width")


def block_targets(sparsity: Sparsity | Sequence[Sparsity], blocks: int) -> list[Sparsity]:
    """One target per block: a single Sparsity means the same for every block."""
    if isinstance(sparsity, Sparsity):
        return [sparsity] * blocks
    if len(sparsity) != blocks:
        raise ValueError(f"{len(sparsity)} block targets for {blocks} blocks")
    return list(sparsity)


@torch.no_grad()
def prune_model(model: nn.Module, method: Method, sparsity: Sparsity | Sequence[Sparsity],
                samples: list[torch.Tensor] | None, settings: Settings,
                stats_out: dict[str, torch.Tensor] | None = None,
                store: BlockStore | None = None,
                moe_calibration: str = "routed") -> list[list[int]]:
    """Prune every matrix in every decoder block in place, block b to `sparsity[b]` (or to
    `sparsity` everywhere). With `stats_out`, also fill it with every pruned matrix's input
    selectivity statistics (the statistic's `export`). With `store`, blocks are loaded and
    released one at a time. Returns the tokens routed to each expert, per block (empty lists
    for blocks without experts, and without calibration)."""
    blocks = decoder_layers(model)
    targets = block_targets(sparsity, len(blocks))
    # shapes only (offloaded blocks are on meta): refusals come before any weight is pruned
    check_nm_fits([block_parts(block, i) for i, block in enumerate(blocks)], targets)
    factory = None
    if method.statistic is not None:
        if not samples:
            raise ValueError(f"{method.name} needs calibration samples")
        factory = method.statistic_for(stats_out is not None).factory(settings)
    prefix = blocks_prefix(model)
    routed = []
    for visit in BlockWalk(model, samples if factory else None, factory, store=store,
                           desc=f"{method.name} blocks", moe_calibration=moe_calibration):
        routed.append(visit.expert_tokens)
        for name, weight in visit.matrices.items():
            full_name = f"{prefix}.{visit.index}.{name}"
            stat = visit.stats[name] if visit.stats is not None else None
            prune_matrix(weight, method, stat, targets[visit.index], settings, full_name)
            if stats_out is not None:
                for key, value in stat.export(settings).items():
                    stats_out[f"{full_name}.{key}"] = value
    return routed


def sparsity_by_block(model: nn.Module) -> tuple[float, list[float]]:
    """Fraction of exact zeros in the pruned matrices: overall and per block."""
    return sparsity_of([count_zeros(block_parts(block, i))
                        for i, block in enumerate(decoder_layers(model))])
