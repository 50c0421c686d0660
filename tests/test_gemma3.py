"""Gemma 3 270M, the second embedded real model: local (sliding-window 512, rotary base 10k) and
global (rotary base 1M) layers, replayed and pruned on windows longer than the sliding window."""
from __future__ import annotations

import pytest
import torch
from test_replay import (
    direct_sequential_wanda_masks,
    last_block_outputs,
    replayed_outputs,
)
from transformers import AutoModelForCausalLM, AutoTokenizer

from lib.arch.blocks import decoder_layers
from lib.io import data
from lib.pruning.methods import METHODS
from lib.pruning.prune import find_linears, prune_model
from lib.pruning.sparsity import parse_sparsity

pytestmark = pytest.mark.slow

SEQLEN = 600  # > the 512-token sliding window, so local and global masks differ


def c4(gemma3_dir, data_dir, count):
    tokenizer = AutoTokenizer.from_pretrained(gemma3_dir)
    return data.c4_windows(data.c4_documents(str(data_dir)), tokenizer, count, 0, SEQLEN)


def test_gemma3_shape(gemma3_dir):
    config = AutoModelForCausalLM.from_pretrained(gemma3_dir).config
    assert (config.num_hidden_layers, config.hidden_size, config.vocab_size) == (18, 640, 262144)
    assert config.num_attention_heads // config.num_key_value_heads == 4
    assert config.tie_word_embeddings and config.sliding_window < SEQLEN
    assert set(config.layer_types) == {"sliding_attention", "full_attention"}


def test_gemma3_replay_matches_model_forward(gemma3_dir, data_dir):
    model = AutoModelForCausalLM.from_pretrained(gemma3_dir).eval()
    samples = c4(gemma3_dir, data_dir, 1)
    expected = last_block_outputs(model, samples)
    replayed = replayed_outputs(model, samples)
    assert (replayed - expected).abs().max() <= 1e-5 * expected.abs().max()


def test_gemma3_wanda_masks_equal_direct_sequential_wanda(gemma3_dir, data_dir):
    """The engine's wanda masks equal Wanda computed on the model's own forwards, block by
    block; that holds only if every replayed block got its own mask and rotary embeddings."""
    samples = c4(gemma3_dir, data_dir, 2)
    expected = direct_sequential_wanda_masks(
        AutoModelForCausalLM.from_pretrained(gemma3_dir).eval(), samples, 0.5)
    model = AutoModelForCausalLM.from_pretrained(gemma3_dir).eval()
    prune_model(model, METHODS["wanda"], parse_sparsity("unstructured", 0.5, False), samples,
                METHODS["wanda"].settings({}))
    for b, block in enumerate(decoder_layers(model)):
        for name, lin in find_linears(block).items():
            assert torch.equal(lin.weight.data == 0, expected[f"{b}.{name}"]), f"{b}.{name}"
