"""The one layer-by-layer pruning loop shared by every method.

For each decoder block: hooks gather the method's statistic while the calibration samples run
through the unpruned block, the method scores each pruned matrix (a Linear's weight, or one
expert's matrix of a fused experts module: lib/matrices.py), the block's sparsity turns
scores into masks, weights are zeroed (or OBS-updated), and the samples run again through the
pruned block to become the next block's inputs (so later blocks calibrate on the pruned model,
as in Wanda). Each block has its own target sparsity (uniform unless a plan says otherwise).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Iterator, Protocol, Sequence

import torch
from torch import nn
from tqdm import tqdm

from lib.errors import UserError
from lib.layerwrapper import InputStatsCollector
from lib.matrices import BlockParts, block_parts, count_zeros, sparsity_of
from lib.methods import Method
from lib.models import blocks_prefix, decoder_layers, module_device
from lib.obs import prune_with_obs
from lib.options import Settings
from lib.replay import capture_block_inputs, run_block
from lib.sparsity import Sparsity

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


class BlockStore(Protocol):
    """Where blocks live when they are not all in memory (lib/offload.py): `load` brings block i's
    weights in before the loop works on it, `release` writes and frees them after."""

    def load(self, index: int) -> None: ...

    def release(self, index: int) -> None: ...


@dataclass
class BlockVisit:
    """One block in the walk: its index, pruned matrices ((out, in) views, by name in the
    block) and the statistics gathered on their inputs (both empty when no statistic was asked
    for), and the tokens routed to each expert (empty without experts)."""

    index: int
    block: nn.Module
    matrices: dict[str, torch.Tensor]
    stats: dict[str, object] | None
    expert_tokens: list[int] = field(default_factory=list)


class BlockWalk:
    """The layer loop. Iterating visits every block in order: load it (`store`), run the
    samples through it with statistic hooks (`factory`; experts fed as `moe_calibration` says),
    yield it, then (`replay`) run the samples through it again, as the caller left it, to make
    the next block's inputs; without `replay` the first pass's outputs are the next inputs (for
    callers that do not change the block). Release it. Afterwards `outputs` holds the last
    block's outputs [n, T, H]."""

    def __init__(self, model: nn.Module, samples: list[torch.Tensor], factory=None,
                 replay: bool = True, store: BlockStore | None = None, desc: str = "blocks",
                 moe_calibration: str = "routed"):
        self.model, self.samples, self.factory = model, samples, factory
        self.replay, self.store, self.desc = replay, store, desc
        self.moe_calibration = moe_calibration
        self.outputs: torch.Tensor | None = None

    @torch.no_grad()
    def __iter__(self) -> Iterator[BlockVisit]:
        blocks = decoder_layers(self.model)
        captured = capture_block_inputs(self.model, self.samples)
        inps = captured.hidden
        outs = torch.empty_like(inps)
        for index, block in enumerate(tqdm(blocks, desc=self.desc)):
            if self.store is not None:
                self.store.load(index)
            device = module_device(block)
            if inps.device != device:
                inps, outs = inps.to(device), outs.to(device)
            kwargs = captured.kwargs_for(index, device)
            if self.factory is not None:
                parts = block_parts(block, index)
                stats, tokens = self._gather(parts, block, inps, kwargs, outs)
                yield BlockVisit(index, block, parts.matrices(), stats, tokens)
            else:  # a plain pass (offloaded evaluation): no matrix is looked at
                run_block(block, inps, kwargs, outs)
                yield BlockVisit(index, block, {}, None)
            if self.replay:
                run_block(block, inps, kwargs, outs)
            if self.store is not None:
                self.store.release(index)
            inps, outs = outs, inps
        self.outputs = inps

    def _gather(self, parts: BlockParts, block: nn.Module, inps: torch.Tensor, kwargs: dict,
                outs: torch.Tensor) -> tuple[dict[str, object], list[int]]:
        """The statistics pass (outs = the block's outputs), plus, when an expert received no
        token, a statistics-only pass that feeds it every token (lib/experts.py)."""
        collector = InputStatsCollector(parts, self.factory, self.moe_calibration)
        try:
            run_block(block, inps, kwargs, outs, collector.end_sample)
            tokens = collector.expert_tokens()
            if collector.missing_experts():
                run_block(block, inps, kwargs, torch.empty_like(outs), collector.end_sample)
        finally:
            collector.remove()
        return collector.stats, tokens


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
    if method.statistic is None:
        for index, block in enumerate(tqdm(blocks, desc=f"{method.name} blocks")):
            if store is not None:
                store.load(index)
            for weight in block_parts(block, index).matrices().values():
                prune_matrix(weight, method, None, targets[index], settings)
            if store is not None:
                store.release(index)
        return [[] for _ in blocks]
    if not samples:
        raise ValueError(f"{method.name} needs calibration samples")
    statistic = method.statistic if stats_out is None else method.statistic.with_selectivity
    prefix = blocks_prefix(model)
    routed = []
    for visit in BlockWalk(model, samples, statistic.factory(settings), store=store,
                           desc=f"{method.name} blocks", moe_calibration=moe_calibration):
        routed.append(visit.expert_tokens)
        for name, weight in visit.matrices.items():
            full_name = f"{prefix}.{visit.index}.{name}"
            stat = visit.stats[name]
            prune_matrix(weight, method, stat, targets[visit.index], settings, full_name)
            if stats_out is not None:
                for key, value in stat.export(settings).items():
                    stats_out[f"{full_name}.{key}"] = value
    return routed


def sparsity_by_block(model: nn.Module) -> tuple[float, list[float]]:
    """Fraction of exact zeros in the pruned matrices: overall and per block."""
    return sparsity_of([count_zeros(block_parts(block, i))
                        for i, block in enumerate(decoder_layers(model))])
