"""--offload: prune and evaluate a model one block at a time, straight from its safetensors files.

The model is built without weights (parameters on the meta device). What lies outside the blocks
(embeddings, final norm, LM head; small) is loaded once; each block is loaded onto --device when
the layer loop reaches it, calibrated, pruned and replayed, its pruned tensors are written to the
--save_model output, and its memory is released. Perplexity runs the same way: every evaluation
window through block b before block b+1, the activations kept in memory (in chunks of windows
when they would not fit), then the model's own head. Peak memory is one block, the activations
and the resident parts, whatever the depth. A GGUF is converted once to a safetensors directory
in --cache_dir; a Hub id is downloaded (safetensors only) into --cache_dir.
"""
from __future__ import annotations

import ctypes
import functools
import json
import logging
import os
from pathlib import Path

import torch
from torch import nn

from lib.arch.blocks import blocks_prefix, decoder_layers
from lib.io.sources import ModelSource
from lib.pruning.replay import BlockWalk, head_logits
from lib.run.errors import UserError

log = logging.getLogger(__name__)

SHARD_BYTES = 2 << 30  # a shard is one block, or (resident parts) at most about 2 GiB
EVAL_ACTIVATION_BYTES = 4 << 30  # evaluation windows kept in memory at once, at most


def checkpoint_dir(source: ModelSource, cache_dir: str | None) -> Path:
    """A local directory of safetensors files for the source: converted or downloaded once."""
    from lib.io import models

    if source.converted:
        return models.ensure_converted(source)
    if source.kind == "dir":
        folder = Path(source.path)
        if not any(folder.glob("*.safetensors")):
            raise UserError(f"--offload streams safetensors files; {folder} has none: resave it "
                            "with save_pretrained(safe_serialization=True)")
        return folder
    if source.kind == "gguf":
        stem = Path(source.gguf_file).stem
        target = Path(cache_dir or "llm_weights") / "converted" / stem
        converted = ModelSource(source.spec, "gguf", source.path, source.gguf_file,
                                converted=str(target))
        return models.ensure_converted(converted)
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(source.path, cache_dir=cache_dir, allow_patterns=[
            "*.json", "*.safetensors", "*.model", "*.txt", "*.jinja"]))
    except Exception as exc:  # noqa: BLE001
        raise UserError(f"could not download {source.spec} from the Hugging Face Hub "
                        f"({type(exc).__name__}); pass a local model directory") from exc


_SAFETENSORS_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
    "U8": torch.uint8, "BOOL": torch.bool,
}


@functools.lru_cache(maxsize=1)
def _libc():
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc (macOS, musl): its allocator is left as it is
        return None


M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter
MAP_FROM_BYTES = 1 << 20


def map_large_allocations() -> None:
    """From now on every allocation of 1 MiB or more gets its own mapping, returned to the OS
    when freed. glibc otherwise raises its mmap threshold up to 32 MiB as blocks are freed, and
    keeps freed heap memory: a small model's peak RSS then grew with depth under --offload (2 vs
    8 blocks of 64 MiB: +160-300 MiB; with this: +3 MiB). Blocks of large models, made of
    tensors above 32 MiB, were mapped anyway."""
    libc = _libc()
    if libc is not None and hasattr(libc, "mallopt"):
        libc.mallopt(M_MMAP_THRESHOLD, MAP_FROM_BYTES)


class _SafetensorsFile:
    """One safetensors file read with plain reads, never memory-mapped: pages of a mapping that
    stay open count in the process's RSS, so a mapped checkpoint makes peak memory grow with every
    block read and the depth-independence of --offload disappears."""

    def __init__(self, path: Path):
        with open(path, "rb") as f:
            size = int.from_bytes(f.read(8), "little")
            header = json.loads(f.read(size))
        header.pop("__metadata__", None)
        self.path, self.start, self.header = path, 8 + size, header

    def tensor(self, name: str) -> torch.Tensor:
        info = self.header[name]
        begin, end = info["data_offsets"]
        dtype = _SAFETENSORS_DTYPES[info["dtype"]]
        if end == begin:
            return torch.empty(info["shape"], dtype=dtype)
        buffer = bytearray(end - begin)
        view = memoryview(buffer)
        with open(self.path, "rb", buffering=0) as f:
            f.seek(self.start + begin)
            done = 0
            while done < len(buffer):  # one read returns at most ~2 GiB on Linux
                got = f.readinto(view[done:])
                if not got:
                    raise UserError(f"{self.path}: truncated at tensor {name}; re-create it")
                done += got
        return torch.frombuffer(buffer, dtype=dtype).reshape(info["shape"])


class Checkpoint:
    """Tensors by the model's parameter names from a directory's safetensors files (one file, or
    an index). A checkpoint in the layout transformers converts from on load (per-expert
    `experts.<e>.gate_proj.weight` for fused `experts.gate_up_proj`, older module names) is read
    the same way: lib/arch/experts.py gives the names, this class stacks the experts."""

    def __init__(self, folder: Path, model_type: str = ""):
        self.folder, self.model_type = folder, model_type
        self._files = {file.name: _SafetensorsFile(file)
                       for file in sorted(folder.glob("*.safetensors"))}
        self.where = {name: file for file, f in self._files.items() for name in f.header}

    def _stored(self, name: str) -> str | None:
        from lib.arch.experts import legacy_names

        if name in self.where or not self.model_type:
            return name if name in self.where else None
        return next((n for n in legacy_names(self.model_type, name) if n in self.where), None)

    def _expert_sources(self, name: str, shape: torch.Size | None) -> list[list[str]] | None:
        from lib.arch.experts import legacy_experts

        if not self.model_type or shape is None or len(shape) != 3:
            return None
        sources = legacy_experts(self.model_type, name, shape[0])
        if sources is None:
            return None
        stored = [[self._stored(n) for n in names] for names in sources]
        return None if any(n is None for names in stored for n in names) else stored

    def __contains__(self, name: str) -> bool:
        return self._stored(name) is not None

    def tensor(self, name: str, shape: torch.Size | None = None) -> torch.Tensor:
        stored = self._stored(name)
        if stored is not None:
            return self._files[self.where[stored]].tensor(stored)
        sources = self._expert_sources(name, shape)
        if sources is None:
            raise UserError(f"{self.folder}: the checkpoint lacks {name}; cannot offload it")
        return torch.cat([torch.stack([self._files[self.where[n]].tensor(n) for n in names])
                          for names in sources], dim=1)


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

    def store(self, writer: ShardWriter | None = None) -> _Store:
        """The lib.pruning.replay.BlockStore that loads blocks and releases them (to `writer`)."""
        return _Store(self, writer)

    def window_logits(self, ids: torch.Tensor, seqlen: int, windows: int):
        """A `forward(w, batch)` for lib.evaluation.perplexity.perplexity: every window of a chunk through block
        b before block b+1 (blocks loaded once per chunk), then the model's own head."""
        hidden = self.model.config.hidden_size
        per_window = seqlen * hidden * torch.finfo(self.dtype).bits // 8
        chunk = max(1, min(windows, EVAL_ACTIVATION_BYTES // per_window))
        cache: dict[int, torch.Tensor] = {}

        def forward(w: int, batch: torch.Tensor) -> torch.Tensor:
            if w not in cache:
                cache.clear()
                first = w - w % chunk
                batches = [ids[:, i * seqlen:(i + 1) * seqlen]
                           for i in range(first, min(first + chunk, windows))]
                cache.update(zip(range(first, first + len(batches)),
                                 self._final_hidden(batches)))
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


class ShardWriter:
    """Sharded safetensors written as tensors arrive, with the index from_pretrained reads,
    into a fresh temporary folder beside `target` (lib/io/writes.py): the caller publishes it to
    `target` when complete, or reads from it and removes it (it made it)."""

    def __init__(self, target: str | Path):
        from lib.io.writes import temporary_folder

        self.target = Path(target)
        self.folder = temporary_folder(self.target)
        self.pending: dict[str, torch.Tensor] = {}
        self.pending_bytes = 0
        self.files: list[list[str]] = []

    def add(self, name: str, tensor: torch.Tensor) -> None:
        self.pending[name] = tensor.detach().to("cpu").contiguous()  # kept alive until written
        self.pending_bytes += tensor.numel() * tensor.element_size()
        if self.pending_bytes >= SHARD_BYTES:
            self.flush()

    def flush(self) -> None:
        from safetensors.torch import save_file

        if not self.pending:
            return
        save_file(self.pending, str(self.folder / f"part-{len(self.files):05d}.tmp"),
                  metadata={"format": "pt"})
        self.files.append(sorted(self.pending))
        self.pending, self.pending_bytes = {}, 0

    def finish(self) -> None:
        self.flush()
        total = len(self.files)
        weight_map = {}
        for i, names in enumerate(self.files):
            final = f"model-{i + 1:05d}-of-{total:05d}.safetensors"
            os.replace(self.folder / f"part-{i:05d}.tmp", self.folder / final)
            weight_map.update({name: final for name in names})
        index = {"metadata": {}, "weight_map": dict(sorted(weight_map.items()))}
        (self.folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))


def checkpoint_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.glob("*.safetensors"))


