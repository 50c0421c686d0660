"""The safetensors checkpoint --offload streams from: where it is (converted or downloaded once),
and its tensors by the model's parameter names."""
from __future__ import annotations

from pathlib import Path

import torch

from lib.io.safetensors_io import SafetensorsFile
from lib.io.sources import ModelSource
from lib.run.errors import UserError


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


class Checkpoint:
    """Tensors by the model's parameter names from a directory's safetensors files (one file, or
    an index). A checkpoint in the layout transformers converts from on load (per-expert
    `experts.<e>.gate_proj.weight` for fused `experts.gate_up_proj`, older module names) is read
    the same way: lib/arch/experts.py gives the names, this class stacks the experts."""

    def __init__(self, folder: Path, model_type: str = ""):
        self.folder, self.model_type = folder, model_type
        self._files = {file.name: SafetensorsFile(file)
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
