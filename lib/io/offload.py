"""--offload: prune and evaluate a model one block at a time, straight from its safetensors files.

The model is built without weights (parameters on the meta device). What lies outside the blocks
(embeddings, final norm, LM head; small) is loaded once; each block is loaded onto --device when
the layer loop reaches it, calibrated, pruned and replayed, its pruned tensors are written to the
--save_model output, and its memory is released. Perplexity runs the same way: every evaluation
window through block b before block b+1, the activations kept in memory (in chunks of windows
when they would not fit), then the model's own head. Peak memory is one block, the activations
and the resident parts, whatever the depth. Where the checkpoint comes from and how its tensors
are found: lib/io/checkpoint.py; its files are read and the pruned blocks written by
lib/io/safetensors_io.py.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from lib.arch.blocks import blocks_prefix, decoder_layers
from lib.io.checkpoint import Checkpoint
from lib.io.safetensors_io import ShardWriter
from lib.pruning.replay import BlockWalk, head_logits
from lib.run.errors import UserError
from lib.run.machine import map_large_allocations

EVAL_ACTIVATION_BYTES = 4 << 30  # evaluation windows kept in memory at once, at most


def _set(module: nn.Module, name: str, value: torch.Tensor) -> None:
    owner, _, leaf = name.rpartition(".")
    target = module.get_submodule(owner) if owner else module
    target._parameters[leaf] = nn.Parameter(value, requires_grad=False)


class OffloadedModel:
    """The meta-device skeleton, its checkpoint, and the blocks loaded one at a time."""

    def __init__(self, folder: Path, dtype: torch.dtype, device: torch.device):
        from accelerate import init_empty_weights
        from transformers import AutoConfig, AutoModelForCausalLM

        self.folder, self.dtype, self.device = folder, dtype, device
        map_large_allocations()
        config = AutoConfig.from_pretrained(folder)
        with init_empty_weights(include_buffers=False):  # buffers (rotary) are real and small
            self.model = AutoModelForCausalLM.from_config(config, dtype=dtype)
        self.model.eval()
        self.model.config.use_cache = False
        self.checkpoint = Checkpoint(folder, config.model_type)
        self.block_source = self.checkpoint  # the pruned blocks' shards, once written
        self.blocks = decoder_layers(self.model)
        self.prefix = blocks_prefix(self.model)
        self.zeros: dict[int, tuple[int, int]] = {}  # block -> (zeros, weights) of its matrices
        self._load_resident()

    def _is_block(self, name: str) -> bool:
        return name.startswith(self.prefix + ".")

    def _load_resident(self) -> None:
        for name, _ in list(self.model.named_parameters(remove_duplicate=False)):
            if not self._is_block(name) and name in self.checkpoint:
                _set(self.model, name, self._read(name))
        head = self.model.get_output_embeddings()
        if head is not None and head.weight.is_meta and self.model.config.tie_word_embeddings:
            head.weight = self.model.get_input_embeddings().weight
        self._buffers_to_device()
        missing = [n for n, p in self.model.named_parameters()
                   if p.is_meta and not self._is_block(n)]
        if missing:
            raise UserError(f"{self.folder}: the checkpoint lacks {missing[0]}; cannot offload")

    def _buffers_to_device(self) -> None:
        for module in self.model.modules():
            for key, buf in module._buffers.items():
                if buf is not None and buf.device != self.device:
                    module._buffers[key] = buf.to(self.device)

    def _read(self, name: str, source: Checkpoint | None = None,
              shape: torch.Size | None = None) -> torch.Tensor:
        tensor = (source or self.checkpoint).tensor(name, shape)
        return tensor.to(device=self.device, dtype=self.dtype)

    def load(self, index: int) -> None:
        block = self.blocks[index]
        base = f"{self.prefix}.{index}."
        for name, param in list(block.named_parameters()):
            _set(block, name, self._read(base + name, self.block_source, param.shape))

    def read_blocks_from(self, folder: Path) -> None:
        """Blocks come from `folder` from now on: where the pruned blocks were written."""
        self.block_source = Checkpoint(Path(folder))

    def release(self, index: int, writer: ShardWriter | None = None) -> None:
        """Count the block's zeros, hand its tensors to the writer, put it back on meta."""
        from lib.arch.matrices import block_parts, count_zeros

        block = self.blocks[index]
        self.zeros[index] = count_zeros(block_parts(block, index))
        base = f"{self.prefix}.{index}."
        for name, param in list(block.named_parameters()):
            if writer is not None:
                writer.add(base + name, param.data)
            _set(block, name, torch.empty_like(param, device="meta"))
        if writer is not None:
            writer.flush()  # one shard per block: nothing held back, whatever the depth

    def named_weights(self):
        """Every parameter as evaluation sees it (lib/evaluation/progress.py digests them): the
        resident ones, then each block loaded from where its weights now come from, one at a
        time, and put back on meta. Consume each tensor before asking for the next: a block's
        tensors go back to meta when the walk moves on."""
        for name, param in self.model.named_parameters():
            if not self._is_block(name):
                yield name, param
        for index, block in enumerate(self.blocks):
            self.load(index)
            base = f"{self.prefix}.{index}."
            for name, param in list(block.named_parameters()):
                yield base + name, param
                _set(block, name, torch.empty_like(param, device="meta"))

    def store(self, writer: ShardWriter | None = None) -> _Store:
        """The lib.pruning.replay.BlockStore that loads blocks and releases them (to `writer`)."""
        return _Store(self, writer)

    def window_logits(self, ids: torch.Tensor, seqlen: int, windows: int):
        """A `forward(w, batch)` for lib.evaluation.perplexity.perplexity: every window of a
        chunk through block b before block b+1 (blocks loaded once per chunk), then the model's
        own head. Window values reach the progress file as the chunk's windows pass the head,
        so a killed run loses at most one chunk of block passes."""
        hidden = self.model.config.hidden_size
        per_window = seqlen * hidden * torch.finfo(self.dtype).bits // 8
        chunk = max(1, min(windows, EVAL_ACTIVATION_BYTES // per_window))
        cache: dict[int, torch.Tensor] = {}

        def forward(w: int, batch: torch.Tensor) -> torch.Tensor:
            if w not in cache:  # the next chunk starts here: a resumed evaluation starts late
                cache.clear()
                batches = [ids[:, i * seqlen:(i + 1) * seqlen]
                           for i in range(w, min(w + chunk, windows))]
                cache.update(zip(range(w, w + len(batches)), self._final_hidden(batches)))
            return head_logits(self.model, batch, cache.pop(w).unsqueeze(0))
        return forward

    def _final_hidden(self, batches: list[torch.Tensor]) -> torch.Tensor:
        walk = BlockWalk(self.model, batches, replay=False, store=self.store(),
                         desc="offloaded evaluation")
        for _ in walk:
            pass
        return walk.outputs

    def sparsity(self) -> tuple[float, list[float]]:
        from lib.arch.matrices import sparsity_of

        return sparsity_of([self.zeros[i] for i in range(len(self.blocks))])

    def save_resident(self, writer: ShardWriter, tokenizer) -> None:
        """The tensors outside the blocks (unchanged), config and tokenizer."""
        seen = set()
        for name, param in self.model.named_parameters():
            if not self._is_block(name) and id(param) not in seen:
                seen.add(id(param))
                writer.add(name, param.data)
        writer.finish()
        self.model.config.use_cache = True
        self.model.config.save_pretrained(writer.folder)
        self.model.config.use_cache = False
        tokenizer.save_pretrained(writer.folder)


class _Store:
    def __init__(self, model: OffloadedModel, writer: ShardWriter | None):
        self.model, self.writer = model, writer

    def load(self, index: int) -> None:
        self.model.load(index)

    def release(self, index: int) -> None:
        self.model.release(index, self.writer)
