"""Mixture-of-experts blocks as transformers 5 builds them: the weights of all experts fused into
3-D parameters of one experts module (`gate_up_proj`, or `up_proj` without a gate, and
`down_proj`), in the layout the module declares (`has_gate`, `has_bias`, `is_transposed`,
`is_concatenated`, set by transformers' `use_experts_implementation`).

To the layer loop every expert's matrices are plain (out, in) matrices like a Linear's weight:
views into the fused parameter, so zeroing a view prunes the model. Their statistics come from
lib/stats/experts_tap.py, which stands in for the experts module's forward.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from torch import nn

LAYOUT = ("has_gate", "has_bias", "is_transposed", "is_concatenated")
MOE_CALIBRATION = ("routed", "all")


def is_fused_experts(module: nn.Module) -> bool:
    """A transformers 5 experts module whose layout we can read."""
    from torch import nn

    return (all(hasattr(module, a) for a in LAYOUT)
            and isinstance(getattr(module, "down_proj", None), nn.Parameter)
            and isinstance(getattr(module, up_name(module), None), nn.Parameter))


def up_name(module: nn.Module) -> str:
    return "gate_up_proj" if getattr(module, "has_gate", True) else "up_proj"


def fused_names(module: nn.Module) -> tuple[str, str]:
    """The module's two fused weight parameters: (gate_up or up, down)."""
    return up_name(module), "down_proj"


def expert_weights(name: str, module: nn.Module) -> dict[str, torch.Tensor]:
    """(out, in) views of every expert's matrices, named `<name>.<parameter>.<expert>`."""
    views = {}
    for param in fused_names(module):
        fused = getattr(module, param).data
        for e in range(fused.shape[0]):
            views[f"{name}.{param}.{e}"] = fused[e].t() if module.is_transposed else fused[e]
    return views


def project(module: nn.Module, param: str, e: int, x: torch.Tensor) -> torch.Tensor:
    """x through expert e's `param` matrix (and bias), in the module's declared layout."""
    from torch.nn import functional as F

    weight = getattr(module, param)[e]
    out = x @ weight if module.is_transposed else F.linear(x, weight)
    if module.has_bias:
        out = out + getattr(module, f"{param}_bias")[e]
    return out


def _legacy_rules(model_type: str) -> list:
    from transformers.conversion_mapping import get_checkpoint_conversion_mapping

    return list(get_checkpoint_conversion_mapping(model_type) or [])


def legacy_names(model_type: str, name: str) -> list[str]:
    """The names `name` may have in a checkpoint written in the per-module layout transformers
    converts from on load (its renamings reversed, e.g. Mixtral's `.mlp.` was
    `.block_sparse_moe.`), `name` itself first."""
    from transformers.conversion_mapping import WeightRenaming

    names = [name]
    for rule in _legacy_rules(model_type):
        if type(rule) is WeightRenaming:
            for new, old in zip(rule.target_patterns, rule.source_patterns):
                names += [n.replace(new, old) for n in names if new in n]
    return list(dict.fromkeys(names))


def legacy_experts(model_type: str, name: str, experts: int) -> list[list[str]] | None:
    """For a fused experts parameter `name`, the per-expert checkpoint tensors it is built from
    on load: one list per source (gate, up; or down), one name per expert, to be stacked over
    experts and concatenated along dim 1. None when transformers has no such rule, or one this
    reader does not know (then the caller refuses the checkpoint)."""
    from transformers.conversion_mapping import (
        Concatenate,
        MergeModulelist,
        WeightConverter,
    )

    for rule in _legacy_rules(model_type):
        if type(rule) is not WeightConverter or len(rule.target_patterns) != 1:
            continue
        target = rule.target_patterns[0].lstrip(".")
        if not name.endswith("." + target):
            continue
        ops = [(type(op), getattr(op, "dim", None)) for op in rule.operations]
        if ops not in ([(MergeModulelist, 0)], [(MergeModulelist, 0), (Concatenate, 1)]):
            return None
        prefix = name[:-len(target)]
        return [[prefix + source.lstrip(".").replace("*", str(e)) for e in range(experts)]
                for source in rule.source_patterns]
    return None
