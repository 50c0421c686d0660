"""Model loading: Hub ids, local HF directories, .gguf files and the embedded aliases."""
from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from lib.embedded import CACHE_ROOT, EMBEDDED
from lib.errors import UserError

log = logging.getLogger(__name__)

SMOLLM2_ALIAS = "smollm2-135m"
MAX_DEFAULT_SEQLEN = 4096


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
        if self.spec in EMBEDDED:
            return self.spec
        name = Path(self.gguf_file or self.path.rstrip("/")).name
        return name.removesuffix(".gguf")

    def loadable(self, cache_dir: str | None) -> tuple[str, dict]:
        """Path and from_pretrained kwargs to read from: the converted copy when it exists."""
        if self.converted and _is_converted(Path(self.converted)):
            return self.converted, {}
        return self.path, self.hf_kwargs(cache_dir)


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


def _is_converted(folder: Path) -> bool:
    return (folder / "config.json").is_file() and any(folder.glob("*.safetensors"))


def ensure_converted(source: ModelSource) -> Path:
    """The float32 safetensors copy of an embedded GGUF, written once (atomically)."""
    folder = Path(source.converted)
    if _is_converted(folder):
        return folder
    log.info("converting %s to a float32 safetensors copy in %s (once)", source.gguf_file, folder)
    model = _from_pretrained(source, source.path, torch.float32, source.hf_kwargs(None))
    clear_quantized_flag(model)
    tokenizer = load_tokenizer(ModelSource(source.spec, "gguf", source.path, source.gguf_file),
                               None)
    partial = folder.with_name(folder.name + ".partial")
    save_model(model, tokenizer, str(partial))
    del model
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(partial, folder)
    return folder


def load_config(source: ModelSource, cache_dir: str | None):
    from transformers import AutoConfig

    path, kwargs = source.loadable(cache_dir)
    try:
        return AutoConfig.from_pretrained(path, **kwargs)
    except Exception as exc:  # noqa: BLE001 - any failure here means the same thing to the user
        where = "the Hugging Face Hub" if source.kind == "hub" else source.path
        raise UserError(f"could not read the model config of {source.spec} from {where} "
                        f"({type(exc).__name__}); pass a local model directory or .gguf file "
                        "when offline") from exc


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The transformer blocks we prune: model.model.layers (LLaMA family) or
    model.model.decoder.layers (OPT)."""
    inner = getattr(model, "model", None)
    layers = getattr(inner, "layers", None)
    if layers is None:
        layers = getattr(getattr(inner, "decoder", None), "layers", None)
    if not isinstance(layers, nn.ModuleList) or len(layers) == 0:
        arch = type(model).__name__
        raise UserError(f"unsupported architecture {arch}: its decoder blocks are not at "
                        "model.model.layers or model.model.decoder.layers; use a LLaMA-family "
                        "or OPT model")
    return layers


def check_architecture(config) -> None:
    """Build the model skeleton on the meta device (no weights) to see that we can prune it."""
    from transformers import AutoModelForCausalLM

    try:
        with torch.device("meta"):
            skeleton = AutoModelForCausalLM.from_config(config)
    except Exception as exc:  # noqa: BLE001
        raise UserError(f"unsupported architecture {config.model_type}: transformers cannot build "
                        "it as a causal LM; use a LLaMA-family or OPT model") from exc
    decoder_layers(skeleton)


def default_seqlen(config) -> int:
    limit = getattr(config, "max_position_embeddings", None)
    if limit is None:
        raise UserError("the model config has no max_position_embeddings: pass --seqlen")
    return min(int(limit), MAX_DEFAULT_SEQLEN)


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {device}: CUDA is not available here; use --device cpu")
    return torch.device(device)


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    if dtype == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    return {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}[dtype]


def _from_pretrained(source: ModelSource, path: str, dtype: torch.dtype, kwargs: dict):
    from transformers import AutoModelForCausalLM

    try:
        return AutoModelForCausalLM.from_pretrained(path, dtype=dtype, **kwargs)
    except Exception as exc:  # noqa: BLE001
        raise UserError(f"could not load the weights of {source.spec} "
                        f"({type(exc).__name__}: {exc}); check the path or network") from exc


def load_model(source: ModelSource, dtype: torch.dtype, device: torch.device,
               cache_dir: str | None):
    """Load weights; spread over all GPUs with accelerate when there is more than one."""
    if source.converted:
        ensure_converted(source)
    path, kwargs = source.loadable(cache_dir)
    if device.type == "cuda" and device.index is None and torch.cuda.device_count() > 1:
        kwargs["device_map"] = "auto"
    log.info("loading %s (%s, %s)", source.spec, dtype, device)
    model = _from_pretrained(source, path, dtype, kwargs)
    if "device_map" not in kwargs:
        model.to(device)
    if source.gguf_file:
        clear_quantized_flag(model)
    model.eval()
    model.config.use_cache = False
    return model


def load_tokenizer(source: ModelSource, cache_dir: str | None):
    from transformers import AutoTokenizer

    path, kwargs = source.loadable(cache_dir)
    try:
        return AutoTokenizer.from_pretrained(path, **kwargs)
    except Exception as exc:  # noqa: BLE001
        raise UserError(f"could not load the tokenizer of {source.spec} "
                        f"({type(exc).__name__}); check the path or network") from exc


def clear_quantized_flag(model: nn.Module) -> None:
    """A GGUF model is dequantized to float on load but still flagged as quantized, which
    makes save_pretrained refuse it; the weights are plain tensors, so drop the flag."""
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config


def input_device(model: nn.Module) -> torch.device:
    return model.get_input_embeddings().weight.device


def module_device(module: nn.Module) -> torch.device:
    return next(module.parameters()).device


def save_model(model: nn.Module, tokenizer, out_dir: str) -> None:
    """Write safetensors weights and the tokenizer so that from_pretrained(out_dir) works."""
    os.makedirs(out_dir, exist_ok=True)
    model.config.use_cache = True
    try:
        model.save_pretrained(out_dir, safe_serialization=True)
    finally:
        model.config.use_cache = False
    tokenizer.save_pretrained(out_dir)
