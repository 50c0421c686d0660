"""Integration on the real embedded model: SmolLM2-135M from its GGUF, real shared data."""
from __future__ import annotations

import json

import torch
from transformers import AutoModelForCausalLM

import main
from lib import masks
from lib.prune import find_linears

BUDGET = ["--nsamples", "8", "--seqlen", "256", "--eval_windows", "8"]


def ppl(save, method):
    return json.loads((save / f"results_{method}.json").read_text())["ppl_test"]


def test_dense_beats_wanda_beats_magnitude(smollm2_dir, tmp_path, data_dir):
    common = ["--data_dir", str(data_dir), "--save", str(tmp_path), *BUDGET]
    saved = tmp_path / "magnitude_model"
    # magnitude straight from the GGUF alias, saved as a plain HF model
    assert main.main(["--model", "smollm2-135m", *common, "--prune_method", "magnitude",
                      "--sparsity_ratio", "0.5", "--save_model", str(saved)]) == 0
    assert main.main(["--model", str(smollm2_dir), *common]) == 0
    assert main.main(["--model", str(smollm2_dir), *common, "--prune_method", "wanda",
                      "--sparsity_ratio", "0.5"]) == 0
    dense, wanda, magnitude = ppl(tmp_path, "dense"), ppl(tmp_path, "wanda"), ppl(tmp_path,
                                                                                  "magnitude")
    assert dense < wanda < magnitude, (dense, wanda, magnitude)

    # the saved GGUF-derived model loads with plain from_pretrained, zeros where an
    # independent magnitude mask of the dense weights says they belong
    pruned = AutoModelForCausalLM.from_pretrained(saved)
    original = AutoModelForCausalLM.from_pretrained(smollm2_dir)
    for block_p, block_o in list(zip(pruned.model.layers, original.model.layers))[::10]:
        lin_p, lin_o = find_linears(block_p), find_linears(block_o)
        for name in lin_p:
            expected = masks.matrix_mask(lin_o[name].weight.abs(), 0.5)
            assert torch.equal(lin_p[name].weight == 0, expected), name
