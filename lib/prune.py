"""The one layer-by-layer pruning loop shared by every method.

For each decoder block: hooks gather the method's statistic while the calibration samples run
through the unpruned block, the method scores each linear's weights, the sparsity turns scores
into masks, weights are zeroed, and the samples run again through the pruned block to become
the next block's inputs (so later blocks calibrate on the pruned model, as in Wanda).
"""
from __future__ import annotations

import functools
import logging
from dataclasses import dataclass

import torch
from torch import nn
from tqdm import tqdm

from lib.errors import UserError
from lib.layerwrapper import STATISTICS, InputStatsCollector
from lib.methods import Method, MethodOptions
from lib.models import decoder_layers, module_device
from lib.obs import prune_with_obs
from lib.replay import capture_block_inputs, run_block
from lib.sparsity import Sparsity

log = logging.getLogger(__name__)


def find_linears(module: nn.Module) -> dict[str, nn.Linear]:
    return {name: m for name, m in module.named_modules() if isinstance(m, nn.Linear)}


@torch.no_grad()
def prune_linear(linear: nn.Linear, method: Method, stat, sparsity: Sparsity,
                 opts: MethodOptions, name: str = "") -> None:
    weight = linear.weight.data
    if method.update is not None:
        weight.copy_(prune_with_obs(weight, stat, method.score, method.update, method.scope,
                                    sparsity, opts, name))
        return
    score = method.score(weight.float(), stat, opts)
    weight[sparsity.mask(score, method.scope)] = 0


@dataclass
class PruneRun:
    layers: int
    calibration_samples: int


def statistic_factory(method: Method, opts: MethodOptions, want_selectivity: bool):
    """The statistic class gathered on each linear's input. Selectivity statistics are a
    superset of Wanda's norm, so --save_stats upgrades any norm-based method to them."""
    key = method.statistic
    if key == "norm" and want_selectivity:
        key = "selectivity"
    if key == "selectivity" and opts.selectivity_stats == "exact":
        key = "selectivity_exact"
    if key == "selectivity":
        return functools.partial(STATISTICS[key], quantile=opts.activity_quantile)
    return STATISTICS[key]


def layer_stats_tensors(name: str, stat, opts: MethodOptions) -> dict[str, torch.Tensor]:
    """What --save_stats writes for one pruned linear."""
    sel = stat.selectivity(opts.activity_quantile, opts.spike_top_frac)
    f32 = dict(dtype=torch.float32, device="cpu")
    return {
        f"{name}.norm": sel.norm.to(**f32).clone(),
        f"{name}.active_frac": sel.active_frac.to(**f32).clone(),
        f"{name}.idf": sel.idf(opts.idf_offset).to(**f32).clone(),
        f"{name}.spikiness": sel.spikiness.to(**f32).clone(),
        f"{name}.threshold": torch.tensor(sel.threshold, **f32),
        f"{name}.tokens": torch.tensor(float(sel.tokens), **f32),
    }


def check_nm_fits(blocks: nn.ModuleList, sparsity: Sparsity) -> None:
    """N:M groups run along each linear's inputs, so every input width must divide by M."""
    if not sparsity.is_nm:
        return
    for index, block in enumerate(blocks):
        for name, linear in find_linears(block).items():
            if linear.in_features % sparsity.m:
                raise UserError(
                    f"--sparsity_type {sparsity.type_name}: block {index} {name} has "
                    f"{linear.in_features} inputs, not a multiple of {sparsity.m}; "
                    "choose an M that divides every linear's input width")


def _blocks_prefix(model: nn.Module, blocks: nn.ModuleList) -> str:
    return next(name for name, module in model.named_modules() if module is blocks)


@torch.no_grad()
def prune_model(model: nn.Module, method: Method, sparsity: Sparsity,
                samples: list[torch.Tensor] | None, opts: MethodOptions,
                stats_out: dict[str, torch.Tensor] | None = None) -> PruneRun:
    """Prune every linear in every decoder block in place. With `stats_out`, also fill it
    with every pruned linear's input statistics (see layer_stats_tensors)."""
    blocks = decoder_layers(model)
    check_nm_fits(blocks, sparsity)
    if method.statistic is None:
        for block in tqdm(blocks, desc=f"{method.name} blocks"):
            for linear in find_linears(block).values():
                prune_linear(linear, method, None, sparsity, opts)
        return PruneRun(len(blocks), 0)
    if not samples:
        raise ValueError(f"{method.name} needs calibration samples")
    captured = capture_block_inputs(model, samples)
    inps = captured.hidden
    outs = torch.empty_like(inps)
    factory = statistic_factory(method, opts, stats_out is not None)
    prefix = _blocks_prefix(model, blocks)
    for index, block in enumerate(tqdm(blocks, desc=f"{method.name} blocks")):
        device = module_device(block)
        if inps.device != device:
            inps, outs = inps.to(device), outs.to(device)
        block_kwargs = captured.kwargs_for(index, device)
        linears = find_linears(block)
        collector = InputStatsCollector(linears, factory)
        try:
            run_block(block, inps, block_kwargs, outs, collector.end_sample)
        finally:
            collector.remove()
        for name, linear in linears.items():
            prune_linear(linear, method, collector.stats[name], sparsity, opts,
                         f"{prefix}.{index}.{name}")
            if stats_out is not None:
                stats_out.update(layer_stats_tensors(f"{prefix}.{index}.{name}",
                                                     collector.stats[name], opts))
        del collector
        run_block(block, inps, block_kwargs, outs)
        inps, outs = outs, inps
    return PruneRun(len(blocks), len(samples))


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
