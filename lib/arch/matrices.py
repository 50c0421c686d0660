"""What a decoder block holds, as the layer loop sees it: the matrices it prunes and the weights it
keeps dense by design. Every weight of two or more dimensions in a block is one or the other;
anything else is refused before a weight is pruned, so that no run reports a sparsity it did not
reach.

Pruned: every nn.Linear's weight, and every expert's matrices of a transformers 5 fused experts
module (lib/arch/experts.py), each an (out, in) matrix. Dense by design (named in the results):
routers, i.e. in a block with experts any module named `gate`, `router` or `shared_expert_gate`
and what it holds, because pruning them changes which experts run; and the experts' biases.
Norms and other biases are 1-D and never pruned.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from lib.arch.experts import expert_weights, fused_names, is_fused_experts
from lib.run.errors import UserError

if TYPE_CHECKING:
    import torch
    from torch import nn

ROUTERS = frozenset({"gate", "router", "shared_expert_gate"})


@dataclass
class BlockParts:
    linears: dict[str, nn.Linear]  # pruned Linears by name in the block
    experts: dict[str, nn.Module]  # fused experts modules by name in the block
    dense: list[str]  # >= 2-D parameters kept dense by design

    def matrices(self) -> dict[str, torch.Tensor]:
        """Every pruned matrix as an (out, in) tensor that shares the model's storage."""
        out = {name: linear.weight.data for name, linear in self.linears.items()}
        for name, module in self.experts.items():
            out.update(expert_weights(name, module))
        return out


def _in_router(name: str) -> bool:
    return any(part in ROUTERS for part in name.split("."))


def block_parts(block: nn.Module, index: int | str = "") -> BlockParts:
    """The block's pruned Linears and experts; refuses a >= 2-D weight that is neither pruned
    nor dense by design, naming it."""
    from torch import nn

    modules = dict(block.named_modules())
    experts = {n: m for n, m in modules.items() if is_fused_experts(m)}
    moe = bool(experts)
    linears = {n: m for n, m in modules.items()
               if isinstance(m, nn.Linear) and not (moe and _in_router(n))}
    covered = {f"{n}.weight" for n in linears}
    covered |= {f"{n}.{p}" for n, m in experts.items() for p in fused_names(m)}
    dense = []
    for name, param in block.named_parameters():
        if param.dim() < 2 or name in covered:
            continue
        owner = name.rsplit(".", 1)[0]
        if (moe and _in_router(name)) or (owner in experts and name.endswith("_bias")):
            dense.append(name)
            continue
        raise UserError(f"block {index} holds {name} of shape {tuple(param.shape)}, which is "
                        "neither pruned (a Linear or transformers 5 fused experts weight) nor "
                        "dense by design (a router or bias): this architecture is not supported")
    return BlockParts(linears, experts, dense)


def model_linears(model: nn.Module) -> dict[str, nn.Linear]:
    """Every pruned Linear of the model's blocks, by its name in the model."""
    from lib.arch.blocks import blocks_prefix, decoder_layers

    prefix = blocks_prefix(model)
    return {f"{prefix}.{i}.{name}": linear for i, block in enumerate(decoder_layers(model))
            for name, linear in block_parts(block, i).linears.items()}


def sparsity_of(counts: list[tuple[int, int]]) -> tuple[float, list[float]]:
    """Overall and per-block fraction of zeros from each block's (zeros, weights)."""
    zeros, total = sum(z for z, _ in counts), sum(t for _, t in counts)
    return zeros / total, [z / t for z, t in counts]


def count_zeros(parts: BlockParts) -> tuple[int, int]:
    """(exact zeros, weights) over the block's pruned matrices."""
    zeros = total = 0
    for weight in parts.matrices().values():
        zeros += int((weight == 0).sum())
        total += weight.numel()
    return zeros, total


def model_record(blocks: nn.ModuleList) -> dict:
    """What the results say of the blocks' weights: the dense-by-design parameters (names within
    a block, over all blocks) and, for MoE models, the experts' share of the pruned weights."""
    dense: set[str] = set()
    expert = total = 0
    for index, block in enumerate(blocks):
        parts = block_parts(block, index)
        dense.update(parts.dense)
        for name, weight in parts.matrices().items():
            total += weight.numel()
            if name not in parts.linears:
                expert += weight.numel()
    record: dict = {"dense_by_design": sorted(dense)}
    if expert:
        record["expert_weight_share"] = expert / total
    return record


def routed_record(routed: list[list[int]]) -> dict:
    """Per block, the fewest, median and most calibration tokens an expert received, and how
    many received none (their statistics came from every token); {} without experts."""
    import statistics

    if not any(routed):
        return {}
    return {"expert_tokens_per_layer": [
        {"fewest": min(counts), "median": statistics.median(counts), "most": max(counts),
         "without_tokens": sum(1 for n in counts if n == 0)} if counts else None
        for counts in routed]}
