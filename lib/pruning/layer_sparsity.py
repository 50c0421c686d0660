"""How much each block is pruned: the same everywhere, or OWL's outlier-weighted layer-wise
sparsity (Yin et al., ICML 2024), for any method.

OWL measures, on the dense model, each block's outlier ratio D_b: the share of the Wanda scores
|W_ij| * ||X_j|| of all the block's pruned matrices (experts' included) that exceed M times their
mean. Blocks with more outliers keep more weights: densities (D_b - min D) / (max D - min D) *
2 lambda, shifted so that their mean is 1 - target; a block's sparsity is 1 - its density, so
the mean over blocks is the target. When every block has the same D_b the spread is undefined;
then every block gets the target (uniform), which is also the limit of the formula as the
spread goes to 0.

The extra cost is one dense calibration pass: every block runs once more over the calibration
windows, with Wanda's norm hooks, before pruning starts (recorded as `owl_pass_seconds`; one
pass, not two: the dense blocks' outputs are the next blocks' inputs).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from lib.pruning.sparsity import Sparsity
from lib.run.errors import UserError
from lib.run.options import Option, Settings

if TYPE_CHECKING:
    import torch
    from torch import nn

OPTIONS = (
    Option("layer_sparsity", "uniform", "how sparsity is spread over blocks: uniform, or owl "
           "(outlier-weighted, unstructured only)", type=str, choices=("uniform", "owl")),
    Option("owl_m", 5.0, "M: a Wanda score is an outlier above M times its block's mean score",
           valid="> 0", check=lambda v: v > 0),
    Option("owl_lambda", 0.08, "lambda: block densities spread over 2 lambda around the target",
           valid="in [0, 0.5]", check=lambda v: 0 <= v <= 0.5),
)


def settings(given: dict) -> Settings:
    values = Settings()
    for option in OPTIONS:
        value = given.get(option.name)
        values[option.name] = option.default if value is None else value
        option.validate(values[option.name])
    return values


def config_of(values: Settings) -> dict | None:
    """What identifies the configuration in a results file: None for uniform (as before OWL)."""
    if values.layer_sparsity == "uniform":
        return None
    return {o.name: values[o.name] for o in OPTIONS}


def check(values: Settings, sparsity: Sparsity) -> None:
    if values.layer_sparsity == "owl" and sparsity.is_nm:
        raise UserError(f"--layer_sparsity owl spreads an unstructured ratio over blocks; an "
                        f"N:M pattern ({sparsity.type_name}) fixes every block's ratio: use "
                        "--sparsity_type unstructured or --layer_sparsity uniform")


def outlier_ratio(scores: list[torch.Tensor], m: float) -> float:
    """The share of all `scores` (a block's matrices together) above m times their mean."""
    import torch

    flat = torch.cat([s.reshape(-1).double() for s in scores])
    return float((flat > m * flat.mean()).double().mean())


def owl_ratios(outliers: list[float], target: float, lam: float) -> list[float]:
    """Per-block sparsity from the outlier ratios; their mean is `target`."""
    low, high = min(outliers), max(outliers)
    if high == low:
        return [target] * len(outliers)
    density = [(d - low) / (high - low) * 2 * lam for d in outliers]
    shift = (1 - target) - sum(density) / len(density)
    return [1 - (d + shift) for d in density]


@dataclass
class LayerPlan:
    """Per-block targets and what OWL measured (empty lists for uniform)."""

    targets: list[Sparsity]
    outlier_ratios: list[float] = field(default_factory=list)
    seconds: float = 0.0

    def record(self) -> dict:
        out = {"sparsity_target_per_layer": [t.ratio for t in self.targets]}
        if self.outlier_ratios:
            out.update(owl_outlier_ratio=self.outlier_ratios,
                       owl_pass_seconds=round(self.seconds, 3))
        return out


def plan_blocks(values: Settings, sparsity: Sparsity, model: nn.Module,
                samples: list[torch.Tensor] | None, store=None,
                moe_calibration: str = "routed") -> LayerPlan:
    from lib.arch.blocks import decoder_layers

    blocks = len(decoder_layers(model))
    if values.layer_sparsity == "uniform":
        return LayerPlan([sparsity] * blocks)
    start = time.perf_counter()
    outliers = measure_outlier_ratios(model, samples, values.owl_m, store, moe_calibration)
    ratios = owl_ratios(outliers, sparsity.ratio, values.owl_lambda)
    bad = [(b, r) for b, r in enumerate(ratios) if not 0 <= r < 1]
    if bad:
        raise UserError(f"--owl_lambda {values.owl_lambda} at --sparsity_ratio {sparsity.ratio} "
                        f"puts block {bad[0][0]} at sparsity {bad[0][1]:.3f}, outside [0, 1); "
                        "lower --owl_lambda")
    return LayerPlan([sparsity.with_ratio(r) for r in ratios], outliers,
                     time.perf_counter() - start)


def measure_outlier_ratios(model: nn.Module, samples: list[torch.Tensor], m: float,
                           store=None, moe_calibration: str = "routed") -> list[float]:
    """OWL's dense pass: each block's outlier ratio of Wanda scores, on inputs from the dense
    blocks before it (`store`: lib.pruning.replay.BlockStore, for offloaded blocks)."""
    from lib.pruning.replay import BlockWalk
    from lib.stats.layerwrapper import WrappedGPT

    if not samples:
        raise ValueError("OWL needs calibration samples")
    ratios = []
    # the blocks stay dense, so the statistics pass's outputs feed the next block (no replay)
    for visit in BlockWalk(model, samples, WrappedGPT, replay=False, store=store,
                           desc="owl dense pass", moe_calibration=moe_calibration):
        scores = [weight.float().abs() * visit.stats[name].column_norm().reshape(1, -1)
                  for name, weight in visit.matrices.items()]
        ratios.append(outlier_ratio(scores, m))
    return ratios
