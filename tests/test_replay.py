"""Replaying captured block inputs reproduces the model's own forward, block by block."""
from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

from lib.prune import capture_block_inputs, run_block


@pytest.mark.parametrize("family", ["llama", "opt"])
def test_replayed_blocks_match_model_forward(family, request):
    model = AutoModelForCausalLM.from_pretrained(request.getfixturevalue(f"tiny_{family}_dir"))
    model.eval()
    blocks = model.model.layers if family == "llama" else model.model.decoder.layers
    gen = torch.Generator().manual_seed(0)
    samples = [torch.randint(0, model.config.vocab_size, (1, 24), generator=gen) for _ in range(3)]
    expected = []
    hook = blocks[-1].register_forward_hook(
        lambda m, a, out: expected.append((out[0] if isinstance(out, tuple) else out)[0].clone()))
    with torch.no_grad():
        for ids in samples:
            model(ids, use_cache=False)
    hook.remove()
    inps, kwargs = capture_block_inputs(model, samples)
    assert not {"cache", "past_key_values", "past_key_value"} & set(kwargs)
    assert kwargs.get("use_cache", False) is False
    if family == "llama":
        assert "position_embeddings" in kwargs
    outs = torch.empty_like(inps)
    for block in blocks:
        run_block(block, inps, kwargs, outs)
        inps, outs = outs, inps
    assert torch.allclose(inps, torch.stack(expected), atol=1e-5)
