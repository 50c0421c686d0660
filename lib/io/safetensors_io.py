"""Safetensors files read and written a tensor at a time, for --offload.

Reading uses plain reads, never a memory map (see SafetensorsFile); writing shards tensors as
they arrive, so neither side ever holds more than a block of a model.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from lib.run.errors import UserError

SHARD_BYTES = 2 << 30  # a shard is one block, or (resident parts) at most about 2 GiB

# Every dtype of the safetensors format that torch can hold and convert to a compute dtype,
# by the format's name for it. Refused: F4 (torch's float4_e2m1fn_x2 packs two values a byte
# and converts to nothing) and F6_E2M3 / F6_E3M2 (no torch dtype). F8_E8M0 needs torch 2.7.
_TORCH_NAMES = {
    "F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16",
    "F8_E4M3": "float8_e4m3fn", "F8_E4M3FNUZ": "float8_e4m3fnuz", "F8_E5M2": "float8_e5m2",
    "F8_E5M2FNUZ": "float8_e5m2fnuz", "F8_E8M0": "float8_e8m0fnu",
    "I64": "int64", "I32": "int32", "I16": "int16", "I8": "int8",
    "U64": "uint64", "U32": "uint32", "U16": "uint16", "U8": "uint8",
    "BOOL": "bool", "C64": "complex64",
}
DTYPES: dict[str, torch.dtype] = {name: getattr(torch, attr) for name, attr in
                                  _TORCH_NAMES.items() if hasattr(torch, attr)}


class SafetensorsFile:
    """One safetensors file read with plain reads, never memory-mapped: pages of a mapping that
    stay open count in the process's RSS, so a mapped checkpoint makes peak memory grow with every
    block read and the depth-independence of --offload disappears. A dtype torch cannot read is
    refused when the file is opened, before any block is pruned."""

    def __init__(self, path: Path):
        with open(path, "rb") as f:
            size = int.from_bytes(f.read(8), "little")
            header = json.loads(f.read(size))
        header.pop("__metadata__", None)
        self.path, self.start, self.header = path, 8 + size, header
        for name, info in header.items():
            _check_dtype(path, name, info["dtype"])

    def tensor(self, name: str) -> torch.Tensor:
        info = self.header[name]
        begin, end = info["data_offsets"]
        dtype = DTYPES[info["dtype"]]
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


def _check_dtype(path: Path, name: str, dtype: str) -> None:
    if dtype not in DTYPES:
        raise UserError(f"{path}: tensor {name} is stored as {dtype}, which this torch cannot "
                        "read; convert the checkpoint to BF16, F16 or F32 (load it with "
                        "transformers and save_pretrained it) and pass that directory")


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
