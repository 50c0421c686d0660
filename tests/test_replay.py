"""Replaying captured block inputs reproduces the model's own forward, block by block, for every
family the tests build: LLaMA (GQA), OPT, Qwen2 (q/k/v biases), Qwen3 (query/key norms),
Mistral (a sliding window in every layer), and Gemma 2 / Gemma 3 with alternating sliding-window
and global layers (windows of 16 < 64 tokens; Gemma 3 with a rotary base per layer type)."""
from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

from lib.arch.blocks import decoder_layers
from lib.pruning.methods import METHODS
from lib.pruning.prune import find_linears, prune_model
from lib.pruning.replay import capture_block_inputs, run_block
from lib.pruning.sparsity import parse_sparsity

FAMILIES = ["llama", "opt", "qwen2", "qwen3", "mistral", "gemma2", "gemma3"]
SEQLEN = 64


def load(family, request):
    model = AutoModelForCausalLM.from_pretrained(request.getfixturevalue(f"tiny_{family}_dir"))
    return model.eval()


def random_samples(model, count=3, seqlen=SEQLEN):
    gen = torch.Generator().manual_seed(0)
    return [torch.randint(0, model.config.vocab_size, (1, seqlen), generator=gen)
            for _ in range(count)]


def last_block_outputs(model, samples) -> torch.Tensor:
    """The final hidden states (before the last norm) of the model's own forward."""
    outputs = []
    hook = decoder_layers(model)[-1].register_forward_hook(
        lambda m, a, out: outputs.append((out[0] if isinstance(out, tuple) else out)[0].clone()))
    with torch.no_grad():
        for ids in samples:
            model(ids, use_cache=False)
    hook.remove()
    return torch.stack(outputs)


def replayed_outputs(model, samples) -> torch.Tensor:
    """The last block's outputs when the blocks run one by one on the captured inputs."""
    captured = capture_block_inputs(model, samples)
    blocks = decoder_layers(model)
    assert len(captured.kwargs) == len(blocks)
    for kwargs in captured.kwargs:
        assert not {"cache", "past_key_values", "past_key_value"} & set(kwargs)
        assert kwargs.get("use_cache", False) is False
    inps, outs = captured.hidden, torch.empty_like(captured.hidden)
    for index, block in enumerate(blocks):
        run_block(block, inps, captured.kwargs_for(index, inps.device), outs)
        inps, outs = outs, inps
    return inps


@pytest.mark.parametrize("family", FAMILIES)
def test_replayed_blocks_match_model_forward(family, request):
    model = load(family, request)
    samples = random_samples(model)
    expected = last_block_outputs(model, samples)
    replayed = replayed_outputs(model, samples)
    assert (replayed - expected).abs().max() <= 1e-5 * expected.abs().max()


@pytest.mark.parametrize("family", ["gemma2", "gemma3"])
def test_layer_types_get_their_own_inputs(family, request):
    """Sliding and global blocks get different masks (Gemma 3: and rotary embeddings); blocks of
    one type share the very same tensors instead of one copy per block."""
    model = load(family, request)
    captured = capture_block_inputs(model, random_samples(model, count=1))
    sliding, full = captured.kwargs[0], captured.kwargs[1]
    assert captured.kwargs[2]["attention_mask"] is sliding["attention_mask"]
    assert captured.kwargs[3]["attention_mask"] is full["attention_mask"]
    # with SDPA the global mask may be None (plain causal attention)
    assert isinstance(sliding["attention_mask"], torch.Tensor)
    assert full["attention_mask"] is None or not torch.equal(sliding["attention_mask"],
                                                             full["attention_mask"])
    if family == "gemma3":
        assert not torch.equal(sliding["position_embeddings"][0], full["position_embeddings"][0])
        assert captured.kwargs[2]["position_embeddings"][0] is sliding["position_embeddings"][0]


class _Stopped(Exception):
    pass


def _stop(module, args, output):
    raise _Stopped


def direct_sequential_wanda_masks(model, samples, ratio: float) -> dict[str, torch.Tensor]:
    """Wanda by its definition, block by block on the model's own forward: the inputs of block
    b's linears come from full forwards through the already pruned blocks 0..b-1; per output row
    the int(C * ratio) weights with the lowest |W_ij| * ||X_j|| are zeroed.

    ||X_j||^2 is Wanda's float32 running mean over samples, the rounding the engine uses too:
    in a deep model one flipped near-tie changes the next block's inputs by an ulp, which flips
    others, so only rounding-identical norms leave the inputs themselves as the thing tested."""
    masks = {}
    for b, block in enumerate(decoder_layers(model)):
        linears = find_linears(block)
        mean_sq = {name: [torch.zeros(lin.in_features), 0] for name, lin in linears.items()}

        def gather(name, x):
            x = x.reshape(-1, x.shape[-1]).float()
            acc, seen = mean_sq[name]
            acc *= seen / (seen + 1)
            acc += x.pow(2).sum(dim=0) / (seen + 1)
            mean_sq[name][1] = seen + 1
        handles = [lin.register_forward_hook(lambda m, a, o, n=name: gather(n, a[0]))
                   for name, lin in linears.items()]
        handles.append(block.register_forward_hook(_stop))  # later blocks are not needed
        with torch.no_grad():
            for ids in samples:  # the base model's own forward, up to block b
                try:
                    model.model(ids, use_cache=False)
                except _Stopped:
                    pass
        for h in handles:
            h.remove()
        for name, lin in linears.items():
            score = lin.weight.data.abs().float() * mean_sq[name][0].sqrt().reshape(1, -1)
            k = int(score.shape[1] * ratio)
            lowest = torch.sort(score, dim=1, stable=True).indices[:, :k]
            lin.weight.data.scatter_(1, lowest, 0.0)
            masks[f"{b}.{name}"] = lin.weight.data == 0
    return masks


@pytest.mark.parametrize("family", FAMILIES)
def test_wanda_masks_equal_direct_sequential_wanda(family, request):
    model = load(family, request)
    samples = random_samples(model, count=4)
    expected = direct_sequential_wanda_masks(load(family, request), samples, 0.5)
    prune_model(model, METHODS["wanda"], parse_sparsity("unstructured", 0.5, False), samples,
                METHODS["wanda"].settings({}))
    for b, block in enumerate(decoder_layers(model)):
        for name, lin in find_linears(block).items():
            assert torch.equal(lin.weight.data == 0, expected[f"{b}.{name}"]), f"{b}.{name}"


@pytest.mark.parametrize("family", FAMILIES)
def test_magnitude_masks_equal_direct_rule(family, request):
    """Magnitude by its definition: in every linear, the int(numel * ratio) smallest |W|
    (ties: the earlier flat index first) are zeroed."""
    model = load(family, request)
    expected = {}
    for b, block in enumerate(decoder_layers(model)):
        for name, lin in find_linears(block).items():
            flat = lin.weight.data.abs().reshape(-1)
            mask = torch.zeros(flat.numel(), dtype=torch.bool)
            mask[torch.sort(flat, stable=True).indices[:int(flat.numel() * 0.5)]] = True
            expected[f"{b}.{name}"] = mask.reshape(lin.weight.shape)
    prune_model(model, METHODS["magnitude"], parse_sparsity("unstructured", 0.5, False), None,
                METHODS["magnitude"].settings({}))
    for b, block in enumerate(decoder_layers(model)):
        for name, lin in find_linears(block).items():
            assert torch.equal(lin.weight.data == 0, expected[f"{b}.{name}"]), f"{b}.{name}"
