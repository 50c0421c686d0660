from __future__ import annotations

import math

import torch
from transformers import AutoModelForCausalLM

from lib.evaluation.perplexity import perplexity


def test_perplexity_matches_direct_loop(tiny_llama_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir).eval()
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, model.config.vocab_size, (1, 16 * 5 + 7), generator=gen)
    nll, count = 0.0, 0
    with torch.no_grad():
        for w in range(3):
            window = ids[:, w * 16:(w + 1) * 16]
            logp = torch.log_softmax(model(window).logits[0].double(), dim=-1)
            for t in range(15):
                nll -= logp[t, window[0, t + 1]].item()
                count += 1
    expected = math.exp(nll / count)
    exact = perplexity(model, ids, 16, max_windows=3)
    assert exact.windows == 3 and exact.predicted_tokens == 45
    assert math.isclose(exact.ppl, expected, rel_tol=1e-5)
    wanda = perplexity(model, ids, 16, max_windows=3, formula="wanda")
    assert math.isclose(wanda.ppl, expected, rel_tol=1e-4)
    assert perplexity(model, ids, 16).windows == 5  # the 7-token tail is dropped
