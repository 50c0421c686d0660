"""Model loading (Hub ids, local HF directories, .gguf files, embedded aliases), the architecture
check, devices and saving. What --model names is decided in lib/io/sources.py, without torch."""
from __future__ import annotations

import logging
import shutil
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

from lib.arch.blocks import decoder_layers
from lib.arch.matrices import block_parts
from lib.io.sources import ModelSource
from lib.run.errors import UserError

log = logging.getLogger(__name__)


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


def check_architecture(source: ModelSource, cache_dir: str | None, prunes: bool = True) -> None:
    """Build the model skeleton on the meta device (no weights) to see that we can prune it:
    blocks where we look for them, every block weight pruned or dense by design
    (lib/arch/matrices.py). A GGUF file without a converted copy is checked when it loads instead:
    transformers would parse its whole vocabulary to build the config."""
    if source.kind == "gguf" and not source.is_converted:
        return
    from transformers import AutoModelForCausalLM

    config = load_config(source, cache_dir)
    try:
        with torch.device("meta"):
            skeleton = AutoModelForCausalLM.from_config(config)
    except Exception as exc:  # noqa: BLE001
        raise UserError(f"unsupported architecture {config.model_type}: transformers cannot build "
                        "it as a causal LM; use a LLaMA-family, Gemma or OPT model") from exc
    blocks = decoder_layers(skeleton)
    if prunes:
        for index, block in enumerate(blocks):
            block_parts(block, index)


def check_device(device: torch.device) -> None:
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {device}: CUDA is not available here; use --device cpu")


def _from_pretrained(source: ModelSource, path: str, dtype: torch.dtype, kwargs: dict):
    from transformers import AutoModelForCausalLM

    try:
        return AutoModelForCausalLM.from_pretrained(path, dtype=dtype, **kwargs)
    except Exception as exc:  # noqa: BLE001
        _refuse_damaged_gguf(source, exc)
        raise UserError(f"could not load the weights of {source.spec} "
                        f"({type(exc).__name__}: {exc}); check the path or network") from exc


@contextmanager
def _gguf_parsed_once():
    """While inside, transformers' GGUF loaders share one GGUFReader per file. They build the
    config, the weights and the tokenizer from three separate readers, and a reader parses
    every header field in Python: about 40 s each for Gemma 3's 262k-entry vocabulary on a
    2-core CPU. A reader only maps the file and reads it, so sharing it changes nothing else."""
    import gguf

    original = gguf.GGUFReader
    readers: dict[str, object] = {}

    def shared(path, *args, **kwargs):
        if args or kwargs:  # a reader opened another way (e.g. writable) is not shared
            return original(path, *args, **kwargs)
        key = str(Path(path).resolve())
        if key not in readers:
            readers[key] = original(path)
        return readers[key]

    gguf.GGUFReader = shared
    try:
        yield
    finally:
        gguf.GGUFReader = original


def ensure_converted(source: ModelSource) -> Path:
    """The float32 safetensors copy of an embedded GGUF, written once (atomically: a killed
    conversion leaves a temporary that the next one removes)."""
    folder = Path(source.converted)
    if source.is_converted:
        return folder
    log.info("converting %s to a float32 safetensors copy in %s (once)", source.gguf_file, folder)
    with _gguf_parsed_once():
        model = _from_pretrained(source, source.path, torch.float32, source.hf_kwargs(None))
        clear_quantized_flag(model)
        tokenizer = load_tokenizer(ModelSource(source.spec, "gguf", source.path,
                                               source.gguf_file), None)
    save_model(model, tokenizer, str(folder), {"converted_from": source.gguf_file})
    return folder


def load_model(source: ModelSource, dtype: torch.dtype, device: torch.device,
               cache_dir: str | None):
    """Load weights; spread over all GPUs with accelerate when there is more than one."""
    if source.converted:
        ensure_converted(source)
    path, kwargs = source.loadable(cache_dir)
    if device.type == "cuda" and device.index is None and torch.cuda.device_count() > 1:
        kwargs["device_map"] = "auto"
    log.info("loading %s (%s, %s)", source.spec, dtype, device)
    try:
        model = _from_pretrained(source, path, dtype, kwargs)
    except UserError:
        if not source.is_converted:
            raise
        # the converted copy is the cache's own (made by ensure_converted): rebuild it once
        log.warning("the converted copy %s cannot be loaded; converting the GGUF again",
                    source.converted)
        shutil.rmtree(source.converted)
        ensure_converted(source)
        model = _from_pretrained(source, source.converted, dtype, kwargs)
    if "device_map" not in kwargs:
        model.to(device)
    if source.gguf_file:
        clear_quantized_flag(model)
    decoder_layers(model)
    model.eval()
    model.config.use_cache = False
    return model


def load_tokenizer(source: ModelSource, cache_dir: str | None):
    from transformers import AutoTokenizer

    path, kwargs = source.loadable(cache_dir)
    try:
        return AutoTokenizer.from_pretrained(path, **kwargs)
    except Exception as exc:  # noqa: BLE001
        _refuse_damaged_gguf(source, exc)
        raise UserError(f"could not load the tokenizer of {source.spec} "
                        f"({type(exc).__name__}); check the path or network") from exc


def _refuse_damaged_gguf(source: ModelSource, exc: Exception) -> None:
    """After a failed load of a GGUF source: say so in one line when the file is shorter than
    its own tensor table says (a cut download or copy), rather than blaming the network."""
    if source.kind != "gguf" or source.is_converted:
        return
    from lib.io.sources import gguf_missing_bytes

    path = Path(source.path) / source.gguf_file
    missing = gguf_missing_bytes(path)
    if missing:
        raise UserError(f"{path} is truncated: {missing} bytes of its tensor data are missing; "
                        "download or copy it again") from exc


def clear_quantized_flag(model: nn.Module) -> None:
    """A GGUF model is dequantized to float on load but still flagged as quantized, which
    makes save_pretrained refuse it; the weights are plain tensors, so drop the flag."""
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config


def save_model(model: nn.Module, tokenizer, out_dir: str, record: dict | None = None) -> dict:
    """Write safetensors weights and the tokenizer so that from_pretrained(out_dir) works: into a
    temporary folder beside `out_dir`, renamed into place when complete (lib/io/writes.py; `record`
    goes into its marker). Returns the saved files' manifest."""
    from lib.io import writes

    tmp = writes.temporary_folder(out_dir)
    model.config.use_cache = True
    try:
        model.save_pretrained(tmp, safe_serialization=True)
    finally:
        model.config.use_cache = False
    tokenizer.save_pretrained(tmp)
    return writes.publish(tmp, out_dir, record)
