"""The statistics of fused experts: `ExpertsTap` stands in for an experts module's forward
(lib/arch/experts.py) while a block's statistics are gathered. It computes what the module computes
(tests/test_moe.py checks it against the model's own forward) and hands each expert its own
inputs: to gate_up the hidden states of the tokens the router sent it, to down their activated
intermediate values.

`--moe_calibration all` feeds every token to every expert's statistics (the outputs still follow
the router), for experts that see few calibration tokens. An expert that receives no token at all
in `routed` mode gets its statistics from all of the block's tokens, in a second statistics-only
pass over the block (lib/pruning/replay.py's BlockWalk), and is counted in the results.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from lib.arch.experts import MOE_CALIBRATION, fused_names, project

if TYPE_CHECKING:
    import torch
    from torch import nn


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
            hidden = project(m, self.up, e, x)
            act = m._apply_gate(hidden) if m.has_gate else m.act_fn(hidden)
            if feeds:
                self.feed(f"{self.name}.{self.down}.{e}", act)
            if every:
                act = act[tokens]
            y = project(m, self.down, e, act)
            if getattr(m, "has_post_expert_norm", False):
                y = m.post_expert_norm(y)
            y = y * top_k_weights[tokens, slot, None]
            out.index_add_(0, tokens, y.to(out.dtype))
        return out
