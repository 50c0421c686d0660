"""Mixture-of-experts blocks as transformers 5 builds them: the weights of all experts fused into
3-D parameters of one experts module (`gate_up_proj`, or `up_proj` without a gate, and
`down_proj`), in the layout the module declares (`has_gate`, `has_bias`, `is_transposed`,
`is_concatenated`, set by transformers' `use_experts_implementation`).

To the layer loop every expert's matrices are plain (out, in) matrices like a Linear's weight:
views into the fused parameter, so zeroing a view prunes the model. Their statistics come from
`ExpertsTap`, which stands in for the experts module's forward while a block's statistics are
gathered. It computes what the module computes (tests/test_moe.py checks it against the model's
own forward) and hands each expert its own inputs: to gate_up the hidden states of the tokens
the router sent it, to down their activated intermediate values.

`--moe_calibration all` feeds every token to every expert's statistics (the outputs still follow
the router), for experts that see few calibration tokens. An expert that receives no token at all
in `routed` mode gets its statistics from all of the block's tokens, in a second statistics-only
pass over the block (lib/pruning/prune.py), and is counted in the results.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

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


def _project(module: nn.Module, param: str, e: int, x: torch.Tensor) -> torch.Tensor:
    """x through expert e's `param` matrix (and bias), in the module's declared layout."""
    from torch.nn import functional as F

    weight = getattr(module, param)[e]
    out = x @ weight if module.is_transposed else F.linear(x, weight)
    if module.has_bias:
        out = out + getattr(module, f"{param}_bias")[e]
    return out


class ExpertsTap:
    """One experts module's forward while its block's statistics are gathered.

    `feed(matrix_name, inputs)` receives each expert's inputs once per sample. `only`: the
    experts whose statistics are still wanted (None: all); in a fallback pass (`fallback=True`)
    those experts see every token and nothing else is fed."""

    def __init__(self, name: str, module: nn.Module, feed: Callable[[str, torch.Tensor], None],
                 mode: str = "routed"):
        import torch

        if mode not in MOE_CALIBRATION:
            raise ValueError(f"moe_calibration {mode!r} is not one of {MOE_CALIBRATION}")
        self.name, self.module, self.feed, self.mode = name, module, feed, mode
        self.up, self.down = fused_names(module)
        self.experts = getattr(module, self.down).shape[0]
        self.routed_tokens = torch.zeros(self.experts, dtype=torch.long)
        self.fallback: set[int] | None = None
        self._saved = module.__dict__.get("forward")
        module.forward = self.forward

    def remove(self) -> None:
        if self._saved is None:
            del self.module.forward
        else:
            self.module.forward = self._saved

    def missing(self) -> list[int]:
        """Experts that received no token."""
        return [e for e in range(self.experts) if self.routed_tokens[e] == 0]

    def _gathers_all(self, e: int) -> bool:
        if self.fallback is not None:
            return e in self.fallback
        return self.mode == "all"

    def forward(self, hidden_states: torch.Tensor, top_k_index: torch.Tensor,
                top_k_weights: torch.Tensor) -> torch.Tensor:
        import torch

        m = self.module
        out = torch.zeros_like(hidden_states)
        for e in range(self.experts):
            tokens, slot = torch.where(top_k_index == e)
            every = self._gathers_all(e)
            if self.fallback is None:
                self.routed_tokens[e] += tokens.numel()
            if tokens.numel() == 0 and not every:
                continue
            feeds = self.fallback is None or every
            x = hidden_states if every else hidden_states[tokens]
            if feeds:
                self.feed(f"{self.name}.{self.up}.{e}", x)
            hidden = _project(m, self.up, e, x)
            act = m._apply_gate(hidden) if m.has_gate else m.act_fn(hidden)
            if feeds:
                self.feed(f"{self.name}.{self.down}.{e}", act)
            if every:
                act = act[tokens]
            y = _project(m, self.down, e, act)
            if getattr(m, "has_post_expert_norm", False):
                y = m.post_expert_norm(y)
            y = y * top_k_weights[tokens, slot, None]
            out.index_add_(0, tokens, y.to(out.dtype))
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
