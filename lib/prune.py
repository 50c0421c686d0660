"""The one layer-by-layer pruning loop shared by every method.

For each decoder block: hooks gather the method's statistic while the calibration samples run
through the unpruned block, the method scores each linear's weights, the block's sparsity turns
scores into masks, weights are zeroed (or OBS-updated), and the samples run again through the
pruned block to become the next block's inputs (so later blocks calibrate on the pruned model,
as in Wanda). Each block has its own target sparsity (uniform unless a plan says otherwise).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Iterator, Protocol, Sequence

import torch
from torch import nn
from tqdm import tqdm

from lib.errors import UserError
from lib.layerwrapper import InputStatsCollector
from lib.methods import Method
from lib.models import decoder_layers, module_device
from lib.obs import prune_with_obs
from lib.options import Settings
from lib.replay import capture_block_inputs, run_block
from lib.sparsity import Sparsity

log = logging.getLogger(__name__)


def find_linears(module: nn.Module) -> dict[str, nn.Linear]:
    return {name: m for name, m in module.named_modules() if isinstance(m, nn.Linear)}


@torch.no_grad()
def prune_linear(linear: nn.Linear, method: Method, stat, sparsity: Sparsity,
                 settings: Settings, name: str = "") -> None:
    weight = linear.weight.data
    if method.update is not None:
        weight.copy_(prune_with_obs(weight, stat, method.score.fn, method.update,
                                    method.scope_for(settings), sparsity, settings, name))
        return
    score = method.score.fn(weight.float(), stat, settings)
    weight[sparsity.mask(score, method.scope_for(settings))] = 0


def check_nm_fits(blocks: nn.ModuleList, targets: Sequence[Sparsity]) -> None:
    """N:M groups run along each linear's inputs, so every input width must divide by M."""
    for index, (block, sparsity) in enumerate(zip(blocks, targets)):
        if not sparsity.is_nm:
            continue
        for name, linear in find_linears(block).items():
            if linear.in_features % sparsity.m:
                raise UserError(
                    f"--sparsity_type {sparsity.type_name}: block {index} {name} has "
                    f"{linear.in_features} inputs, not a multiple of {sparsity.m}; "
                    "choose an M that divides every linear's input width")


def block_targets(sparsity: Sparsity | Sequence[Sparsity], blocks: int) -> list[Sparsity]:
    """One target per block: a single Sparsity means the same for every block."""
    if isinstance(sparsity, Sparsity):
        return [sparsity] * blocks
    if len(sparsity) != blocks:
        raise ValueError(f"{len(sparsity)} block targets for {blocks} blocks")
    return list(sparsity)


def _blocks_prefix(model: nn.Module, blocks: nn.ModuleList) -> str:
    return next(name for name, module in model.named_modules() if module is blocks)


class BlockStore(Protocol):
    """Where blocks live when they are not all in memory (lib/offload.py): `load` brings block i's
    weights in before the loop works on it, `release` writes and frees them after."""

    def load(self, index: int) -> None: ...

    def release(self, index: int) -> None: ...


@dataclass
class BlockVisit:
    """One block in the walk: its index, linears, and the statistics gathered on their inputs
    (None when no statistic was asked for)."""

    index: int
    block: nn.Module
    linears: dict[str, nn.Linear]
    stats: dict[str, object] | None


class BlockWalk:
    """The layer loop. Iterating visits every block in order: load it (`store`), run the
    samples through it with statistic hooks (`factory`), yield it, then (`replay`) run the
    samples through it again, as the caller left it, to make the next block's inputs; without
    `replay` the first pass's outputs are the next inputs (for callers that do not change the
    block). Release it. Afterwards `outputs` holds the last block's outputs [n, T, H]."""

    def __init__(self, model: nn.Module, samples: list[torch.Tensor], factory=None,
                 replay: bool = True, store: BlockStore | None = None, desc: str = "blocks"):
        self.model, self.samples, self.factory = model, samples, factory
        self.replay, self.store, self.desc = replay, store, desc
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
            linears = find_linears(block)
            collector = None if self.factory is None else InputStatsCollector(linears,
                                                                               self.factory)
            try:
                run_block(block, inps, kwargs, outs, collector and collector.end_sample)
            finally:
                if collector is not None:
                    collector.remove()
            yield BlockVisit(index, block, linears, collector and collector.stats)
            del collector
            if self.replay:
                run_block(block, inps, kwargs, outs)
            if self.store is not None:
                self.store.release(index)
            inps, outs = outs, inps
        self.outputs = inps


@torch.no_grad()
def prune_model(model: nn.Module, method: Method, sparsity: Sparsity | Sequence[Sparsity],
                samples: list[torch.Tensor] | None, settings: Settings,
                stats_out: dict[str, torch.Tensor] | None = None,
                store: BlockStore | None = None) -> None:
    """Prune every linear in every decoder block in place, block b to `sparsity[b]` (or to
    `sparsity` everywhere). With `stats_out`, also fill it with every pruned linear's input
    selectivity statistics (the statistic's `export`). With `store`, blocks are loaded and
    released one at a time."""
    blocks = decoder_layers(model)
    targets = block_targets(sparsity, len(blocks))
    check_nm_fits(blocks, targets)  # shapes only: works on offloaded (meta) blocks too
    if method.statistic is None:
        for index, block in enumerate(tqdm(blocks, desc=f"{method.name} blocks")):
            if store is not None:
                store.load(index)
            for linear in find_linears(block).values():
                prune_linear(linear, method, None, targets[index], settings)
            if store is not None:
                store.release(index)
        return
    if not samples:
        raise ValueError(f"{method.name} needs calibration samples")
    statistic = method.statistic if stats_out is None else method.statistic.with_selectivity
    prefix = _blocks_prefix(model, blocks)
    for visit in BlockWalk(model, samples, statistic.factory(settings), store=store,
                           desc=f"{method.name} blocks"):
        for name, linear in visit.linears.items():
            full_name = f"{prefix}.{visit.index}.{name}"
            stat = visit.stats[name]
            prune_linear(linear, method, stat, targets[visit.index], settings, full_name)
            if stats_out is not None:
                for key, value in stat.export(settings).items():
                    stats_out[f"{full_name}.{key}"] = value


def sparsity_by_block(model: nn.Module) -> tuple[float, list[float]]:
    """Fraction of exact zeros in the pruned linears: overall and per block."""
    zeros = total = 0
    per_block = []
    for block in decoder_layers(model):
        bz = bt = 0
        for linear in find_linears(block).values():
            bz += int((linear.weight.data == 0).sum())
            bt += linear.weight.numel()
        per_block.append(bz / bt)
        zeros, total = zeros + bz, total + bt
    return zeros / total, per_block
