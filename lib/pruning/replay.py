"""Run decoder blocks one at a time on exactly the inputs the model itself gives them.

A model passes each block its hidden states and keyword arguments (rotary embeddings, attention
masks, positions). Those arguments are not the same for every block: families with
`config.layer_types` (Gemma 2/3, and others) give sliding-window layers another mask than global
ones, and Gemma 3 another rotary base. So the arguments are captured per block, from one forward
of the model in which every block is a stub that records what it is called with and passes its
hidden states on unchanged: nothing but the embeddings and the mask/rotary set-up is computed.
Tensors the model shares between blocks (one mask per layer type) stay shared.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator, Protocol

import torch
from torch import nn
from tqdm import tqdm

from lib.arch.blocks import decoder_layers, input_device, module_device
from lib.arch.matrices import BlockParts, block_parts
from lib.run.errors import UserError
from lib.stats.layerwrapper import InputStatsCollector

CACHE_KWARGS = {"cache", "past_key_value", "past_key_values", "layer_past"}


class _Captured(Exception):
    """Raised by a stub block to end the forward once what is needed is stored."""


def _without_cache(kwargs: dict) -> dict:
    """Drop the KV cache the model passes its layers: replaying samples would append to it."""
    from transformers.cache_utils import Cache

    clean = {k: v for k, v in kwargs.items()
             if k not in CACHE_KWARGS and not isinstance(v, Cache)}
    if "use_cache" in clean:
        clean["use_cache"] = False
    return clean


def _to_device(value, device: torch.device, moved: dict[int, tuple]):
    """`value` with every tensor on `device`; `moved` maps id(original) to (original, copy) so
    a tensor shared by several blocks is moved once (the original is kept so its id stays
    unique)."""
    if isinstance(value, torch.Tensor):
        if value.device == device:
            return value
        if id(value) not in moved:
            moved[id(value)] = (value, value.to(device))
        return moved[id(value)][1]
    if isinstance(value, (tuple, list)):
        return type(value)(_to_device(v, device, moved) for v in value)
    if isinstance(value, dict):
        return {k: _to_device(v, device, moved) for k, v in value.items()}
    return value


@contextmanager
def _stubbed(blocks: nn.ModuleList, forwards: list):
    """Each block's forward replaced by the matching stub, restored afterwards (also when the
    blocks already had an instance-level forward, e.g. accelerate's device hooks)."""
    saved = [block.__dict__.get("forward") for block in blocks]
    for block, forward in zip(blocks, forwards):
        block.forward = forward
    try:
        yield
    finally:
        for block, forward in zip(blocks, saved):
            if forward is None:
                del block.forward
            else:
                block.forward = forward


@dataclass
class BlockInputs:
    """What the model gives its blocks: block 0's hidden states for every sample [n, T, H],
    and every block's keyword arguments (the same for every sample: all share one shape)."""

    hidden: torch.Tensor
    kwargs: list[dict]
    _moved: dict = field(default_factory=dict, repr=False)

    def kwargs_for(self, index: int, device: torch.device) -> dict:
        """Block `index`'s keyword arguments on `device`, each tensor moved once per device."""
        return _to_device(self.kwargs[index], device, self._moved.setdefault(str(device), {}))


@torch.no_grad()
def capture_block_inputs(model: nn.Module, samples: list[torch.Tensor]) -> BlockInputs:
    """Run the samples through the model with every block replaced by a recording stub.

    The first sample passes through all the stubs, which store each block's keyword arguments;
    the others stop at block 0, which stores their hidden states."""
    blocks = decoder_layers(model)
    kwargs: list[dict | None] = [None] * len(blocks)
    hidden_store: dict = {}

    def stub(index: int):
        def forward(*args, **kw):
            hidden = args[0] if args else kw.pop("hidden_states")
            if len(args) > 1:
                raise UserError(f"unsupported architecture {type(model).__name__}: block {index} "
                                "takes extra positional arguments, which cannot be replayed")
            if index == 0:
                if "inps" not in hidden_store:
                    hidden_store["inps"] = torch.empty((len(samples), *hidden.shape[1:]),
                                                       dtype=hidden.dtype, device=hidden.device)
                hidden_store["inps"][hidden_store["i"]] = hidden[0]
            if kwargs[index] is None:
                kwargs[index] = _without_cache(kw)
            if index == len(blocks) - 1 or kwargs[-1] is not None:
                raise _Captured
            return hidden
        return forward

    with _stubbed(blocks, [stub(index) for index in range(len(blocks))]):
        for i, ids in enumerate(samples):
            hidden_store["i"] = i
            try:
                model(ids.to(input_device(model)), use_cache=False)
            except _Captured:
                pass
    if any(k is None for k in kwargs):
        missing = kwargs.index(None)
        raise UserError(f"unsupported architecture {type(model).__name__}: the model never "
                        f"called block {missing}, so its inputs cannot be captured")
    return BlockInputs(hidden_store["inps"], kwargs)


@torch.no_grad()
def head_logits(model: nn.Module, ids: torch.Tensor,
                final_hidden: torch.Tensor) -> torch.Tensor:
    """The model's logits for `ids` when its blocks' output is `final_hidden` [1, T, H]: the
    model's own forward with block 0 answering `final_hidden` and the others passing it on, so
    its final norm, head and any logit soft-capping apply exactly as in a full forward."""
    blocks = decoder_layers(model)

    def first(*args, **kw):
        return final_hidden

    def passing(*args, **kw):
        return args[0] if args else kw["hidden_states"]

    with _stubbed(blocks, [first] + [passing] * (len(blocks) - 1)):
        return model(ids.to(input_device(model)), use_cache=False).logits


@torch.no_grad()
def run_block(block: nn.Module, inps: torch.Tensor, kwargs: dict, outs: torch.Tensor,
              after_sample=None) -> None:
    """outs[j] = block(inps[j]) for every sample j, one sample at a time."""
    for j in range(inps.shape[0]):
        out = block(inps[j:j + 1], **kwargs)
        outs[j] = (out[0] if isinstance(out, tuple) else out)[0]
        if after_sample is not None:
            after_sample()


class BlockStore(Protocol):
    """Where blocks live when they are not all in memory (lib/io/offload.py): `load` brings block i's
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
    """The one block walker (pruning, OWL's statistics pass, offloaded evaluation and copies).
    Iterating visits every block in order: load it (`store`), run the samples through it with
    statistic hooks (`factory`; experts fed as `moe_calibration` says), yield it, then
    (`replay`) run the samples through it again, as the caller left it, to make the next
    block's inputs; without `replay` the first pass's outputs are the next inputs (for callers
    that do not change the block). Release it. Afterwards `outputs` holds the last block's
    outputs [n, T, H]. Without samples no block runs: each is loaded, yielded with its
    matrices and released (calibration-free pruning, a dense pass through offloaded blocks)."""

    def __init__(self, model: nn.Module, samples: list[torch.Tensor] | None, factory=None,
                 replay: bool = True, store: BlockStore | None = None, desc: str = "blocks",
                 moe_calibration: str = "routed"):
        self.model, self.samples, self.factory = model, samples, factory
        self.replay, self.store, self.desc = replay, store, desc
        self.moe_calibration = moe_calibration
        self.outputs: torch.Tensor | None = None

    @torch.no_grad()
    def __iter__(self) -> Iterator[BlockVisit]:
        blocks = decoder_layers(self.model)
        if self.samples is None:
            yield from self._without_samples(blocks)
            return
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

    def _without_samples(self, blocks: nn.ModuleList) -> Iterator[BlockVisit]:
        for index, block in enumerate(tqdm(blocks, desc=self.desc)):
            if self.store is not None:
                self.store.load(index)
            yield BlockVisit(index, block, block_parts(block, index).matrices(), None)
            if self.store is not None:
                self.store.release(index)

    def _gather(self, parts: BlockParts, block: nn.Module, inps: torch.Tensor, kwargs: dict,
                outs: torch.Tensor) -> tuple[dict[str, object], list[int]]:
        """The statistics pass (outs = the block's outputs), plus, when an expert received no
        token, a statistics-only pass that feeds it every token (lib/arch/experts.py)."""
        collector = InputStatsCollector(parts, self.factory, self.moe_calibration)
        try:
            run_block(block, inps, kwargs, outs, collector.end_sample)
            tokens = collector.expert_tokens()
            if collector.missing_experts():
                run_block(block, inps, kwargs, torch.empty_like(outs), collector.end_sample)
        finally:
            collector.remove()
        return collector.stats, tokens
