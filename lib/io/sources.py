"""What --model names, and the little a run must know of it before loading anything heavy.

Resolving a source and reading its context length need neither torch nor transformers: a local
directory's config.json is read as JSON, a GGUF file's header is read only up to the keys asked
for (transformers' GGUF reader parses every tensor and the whole vocabulary first, 10-30 s), and
a Hub id's config is looked up in the local Hugging Face cache. Refusals (a --seqlen beyond the
context, say) and --skip_if_done are decided from this.
"""
from __future__ import annotations

import functools
import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from lib.io.embedded import CACHE_ROOT, EMBEDDED
from lib.run.errors import UserError


@dataclass(frozen=True)
class ModelSource:
    """Where a model comes from: `path` is a Hub id or a directory; `gguf_file` a file in it.
    An embedded alias also names `converted`: a float32 safetensors copy of its GGUF, made on
    first use, from which it loads in a second instead of dequantizing again."""

    spec: str
    kind: str  # "hub", "dir" or "gguf"
    path: str
    gguf_file: str | None = None
    converted: str | None = None

    def hf_kwargs(self, cache_dir: str | None) -> dict:
        kwargs: dict = {}
        if self.gguf_file:
            kwargs["gguf_file"] = self.gguf_file
        if self.kind == "hub" and cache_dir:
            kwargs["cache_dir"] = cache_dir
        return kwargs

    @property
    def short_name(self) -> str:
        return short_name(self.spec)

    @property
    def is_converted(self) -> bool:
        return self.converted is not None and is_hf_dir(Path(self.converted))

    def loadable(self, cache_dir: str | None) -> tuple[str, dict]:
        """Path and from_pretrained kwargs to read from: the converted copy when it exists."""
        if self.is_converted:
            return self.converted, {}
        return self.path, self.hf_kwargs(cache_dir)


def short_name(spec: str) -> str:
    """The name results directories use: the alias, or the last part of the path or Hub id."""
    if spec in EMBEDDED:
        return spec
    return Path(spec.rstrip("/")).name.removesuffix(".gguf") or "model"


def is_hf_dir(folder: Path) -> bool:
    return (folder / "config.json").is_file() and any(folder.glob("*.safetensors"))


def _looks_like_path(spec: str) -> bool:
    return spec.startswith((".", "/", "~")) or spec.endswith(".gguf") or spec.count("/") > 1


def resolve_model(spec: str) -> ModelSource:
    """Decide what --model names; fail early with one line when a local path is missing."""
    if spec in EMBEDDED:
        gguf = EMBEDDED[spec].gguf_path()
        return ModelSource(spec, "gguf", str(gguf.parent), gguf.name,
                           converted=str(CACHE_ROOT / "converted" / spec))
    path = Path(os.path.expanduser(spec))
    if path.is_file() and path.suffix == ".gguf":
        return ModelSource(spec, "gguf", str(path.parent), path.name)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise UserError(f"--model {spec}: directory has no config.json; point it at a "
                            "saved Hugging Face model or a .gguf file")
        return ModelSource(spec, "dir", str(path))
    if path.exists() or _looks_like_path(spec):
        raise UserError(f"--model {spec}: no such model directory or .gguf file; check the path "
                        f"or use a Hub id or an alias ({', '.join(EMBEDDED)})")
    return ModelSource(spec, "hub", spec)


# where configs keep their context length (GPT-2 style configs say n_positions)
CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length")


def context_length(source: ModelSource, cache_dir: str | None) -> int | None:
    """The model's context in tokens from its config or GGUF header; None when it cannot be
    known without the network (a Hub id not yet in the local cache) or the config has none."""
    config = _cheap_config(source, cache_dir)
    if config is None:
        return None
    for key in CONTEXT_KEYS:
        value = config.get(key)
        if isinstance(value, int) and value > 0:
            return value
    return None


def _cheap_config(source: ModelSource, cache_dir: str | None) -> dict | None:
    if source.is_converted:
        return json.loads((Path(source.converted) / "config.json").read_text())
    if source.kind == "dir":
        return json.loads((Path(source.path) / "config.json").read_text())
    if source.kind == "gguf":
        path = Path(source.path) / source.gguf_file
        arch = gguf_metadata(path, ["general.architecture"]).get("general.architecture")
        found = gguf_metadata(path, [f"{arch}.context_length"])
        return {"model_type": arch, "max_position_embeddings": found.get(f"{arch}.context_length")}
    from huggingface_hub import (
        try_to_load_from_cache,  # no torch; reads the local cache only
    )

    cached = try_to_load_from_cache(source.path, "config.json", cache_dir=cache_dir)
    return json.loads(Path(cached).read_text()) if isinstance(cached, str) else None


@functools.cache
def _value_types() -> tuple[dict[int, Any], int, int]:
    """gguf's scalar value types as little-endian numpy dtypes (gguf's own reader table), and
    its string and array types, as plain ints: a vocabulary is skipped one string at a time,
    and comparing enum members costs more than the read. Imported on first use, not with this
    module: gguf brings numpy (0.4 s), which resolving a Hub id or a directory never needs."""
    import numpy as np
    from gguf import GGUFReader, GGUFValueType

    scalars = {int(kind): np.dtype(t).newbyteorder("<")
               for kind, t in GGUFReader.gguf_scalar_to_np.items()}
    return scalars, int(GGUFValueType.STRING), int(GGUFValueType.ARRAY)


def gguf_metadata(path: Path, keys: list[str]) -> dict[str, Any]:
    """The header values of `keys` (those present), reading the key-value section only until
    all are found: the vocabulary arrays that follow them are skipped, not parsed."""
    wanted, found = set(keys), {}
    with open(path, "rb") as f:
        if f.read(4) != b"GGUF":
            raise UserError(f"{path} is not a GGUF file (bad magic); check the path")
        version, _tensors, count = struct.unpack("<IQQ", f.read(20))
        if version < 2:
            raise UserError(f"{path}: GGUF version {version} is too old to read; reconvert it")
        for _ in range(count):
            key = _read_string(f)
            kind = struct.unpack("<I", f.read(4))[0]
            if key in wanted:
                found[key] = _read_value(f, kind)
                if len(found) == len(wanted):
                    break
            else:
                _skip_value(f, kind)
    return found


def _read_string(f: BinaryIO) -> str:
    (length,) = struct.unpack("<Q", f.read(8))
    return f.read(length).decode("utf-8", errors="replace")


def _read_value(f: BinaryIO, kind: int) -> Any:
    scalars, string, array = _value_types()
    if kind in scalars:
        return _read_scalars(f, scalars[kind], 1)[0]
    if kind == string:
        return _read_string(f)
    if kind == array:
        item, count = struct.unpack("<IQ", f.read(12))
        if item in scalars:  # in one read: token scores and types are 100k+ long
            return _read_scalars(f, scalars[item], count)
        return [_read_value(f, item) for _ in range(count)]
    raise UserError(f"unknown GGUF value type {kind}; the file may be damaged")


def _read_scalars(f: BinaryIO, dtype: Any, count: int) -> list:
    import numpy as np

    return np.frombuffer(f.read(count * dtype.itemsize), dtype, count=count).tolist()


def _skip_value(f: BinaryIO, kind: int) -> None:
    scalars, string, array = _value_types()
    if kind in scalars:
        f.seek(scalars[kind].itemsize, os.SEEK_CUR)
    elif kind == string:
        f.seek(struct.unpack("<Q", f.read(8))[0], os.SEEK_CUR)
    elif kind == array:
        item, count = struct.unpack("<IQ", f.read(12))
        if item in scalars:
            f.seek(count * scalars[item].itemsize, os.SEEK_CUR)
        else:
            for _ in range(count):
                _skip_value(f, item)
    else:
        raise UserError(f"unknown GGUF value type {kind}; the file may be damaged")


def gguf_missing_bytes(path: Path) -> int:
    """How many bytes a GGUF file lacks: the end of its last tensor, by its own header (key-value
    section skipped, tensor table read), past the file's size. 0 when whole, or when the header
    itself cannot be read (then the caller's own error stands)."""
    from gguf import (
        GGML_QUANT_SIZES,
        GGUF_DEFAULT_ALIGNMENT,
        GGMLQuantizationType,
        Keys,
    )

    try:
        with open(path, "rb") as f:
            if f.read(4) != b"GGUF":
                return 0
            _version, tensors, count = struct.unpack("<IQQ", f.read(20))
            alignment = GGUF_DEFAULT_ALIGNMENT
            for _ in range(count):
                key = _read_string(f)
                kind = struct.unpack("<I", f.read(4))[0]
                if key == Keys.General.ALIGNMENT:
                    alignment = _read_value(f, kind)
                else:
                    _skip_value(f, kind)
            end = 0
            for _ in range(tensors):
                _read_string(f)
                (dims,) = struct.unpack("<I", f.read(4))
                shape = struct.unpack(f"<{dims}Q", f.read(8 * dims))
                kind, offset = struct.unpack("<IQ", f.read(12))
                block, size = GGML_QUANT_SIZES[GGMLQuantizationType(kind)]
                elements = 1
                for n in shape:
                    elements *= n
                end = max(end, offset + elements // block * size)
            start = -(-f.tell() // alignment) * alignment
    except (OSError, struct.error, ValueError, KeyError, UserError):
        return 0
    return max(0, start + end - path.stat().st_size)
