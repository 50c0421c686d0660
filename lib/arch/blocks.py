"""Where a model keeps its decoder blocks, and which device a module lives on."""
from __future__ import annotations

import torch
from torch import nn

from lib.run.errors import UserError


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The transformer blocks we prune: model.model.layers (LLaMA family, Gemma) or
    model.model.decoder.layers (OPT)."""
    inner = getattr(model, "model", None)
    layers = getattr(inner, "layers", None)
    if layers is None:
        layers = getattr(getattr(inner, "decoder", None), "layers", None)
    if not isinstance(layers, nn.ModuleList) or len(layers) == 0:
        arch = type(model).__name__
        raise UserError(f"unsupported architecture {arch}: its decoder blocks are not at "
                        "model.model.layers or model.model.decoder.layers; use a LLaMA-family, "
                        "Gemma or OPT model")
    return layers


def blocks_prefix(model: nn.Module) -> str:
    """The blocks' name in the model (`model.layers`, `model.decoder.layers`)."""
    blocks = decoder_layers(model)
    return next(name for name, module in model.named_modules() if module is blocks)


def input_device(model: nn.Module) -> torch.device:
    return model.get_input_embeddings().weight.device


def module_device(module: nn.Module) -> torch.device:
    return next(module.parameters()).device
