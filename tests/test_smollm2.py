"""Integration on the real embedded model: SmolLM2-135M from its GGUF, real shared data."""
from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForCausalLM

import main
from lib.pruning import masks
from lib.pruning.prune import find_linears

pytestmark = pytest.mark.slow

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
    pairs = list(zip(pruned.model.layers, original.model.layers, strict=True))
    for block_p, block_o in pairs[::10]:
        lin_p, lin_o = find_linears(block_p), find_linears(block_o)
        for name in lin_p:
            expected = masks.matrix_mask(lin_o[name].weight.abs(), 0.5)
            assert torch.equal(lin_p[name].weight == 0, expected), name


def test_histogram_statistics_on_real_activations(smollm2_dir, data_dir):
    """Bounded-memory statistics vs the exact definitions on SmolLM2 layers 0, 15 and 29."""
    from transformers import AutoTokenizer

    from lib.io import data
    from lib.stats.layerwrapper import ExactSelectivityWrappedGPT, SelectivityWrappedGPT

    model = AutoModelForCausalLM.from_pretrained(smollm2_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)
    windows = data.c4_windows(data.c4_documents(str(data_dir)), tokenizer, 4, seed=0, seqlen=256)
    pairs, handles = {}, []
    for i in (0, 15, 29):
        for name in ("self_attn.q_proj", "self_attn.o_proj", "mlp.down_proj"):
            linear = dict(model.model.layers[i].named_modules())[name]
            pair = (SelectivityWrappedGPT(linear.in_features, torch.device("cpu"), quantile=0.6),
                    ExactSelectivityWrappedGPT(linear.in_features, torch.device("cpu")))
            pairs[f"{i}.{name}"] = pair
            handles.append(linear.register_forward_hook(
                lambda m, args, out, pair=pair: _feed(pair, args[0])))
    with torch.no_grad():
        for ids in windows:
            model(ids, use_cache=False)
    for h in handles:
        h.remove()
    for key, (hist, exact) in pairs.items():
        h, e = hist.selectivity(0.6, 0.1), exact.selectivity(0.6, 0.1)
        assert abs(h.threshold - e.threshold) <= 0.01 * e.threshold, key
        assert (h.active_frac - e.active_frac).abs().max() <= 0.01, key
        assert ((h.spikiness - e.spikiness).abs() / e.spikiness).max() <= 0.02, key


def _feed(stats, x) -> None:
    for stat in stats:
        stat.add_batch(x)
