from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_cli import FAST, load_results
from transformers import AutoModelForCausalLM

from lib.evaluation.perplexity import PPL_FORMULAS, perplexity
from lib.evaluation.progress import WindowLog, weights_digest

ROOT = Path(__file__).resolve().parents[1]


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


def window_nll(model, window: torch.Tensor) -> float:
    """One window's summed NLL, from log-softmax by hand."""
    with torch.no_grad():
        logp = torch.log_softmax(model(window).logits[0, :-1].double(), dim=-1)
    return -logp.gather(1, window[0, 1:, None]).sum().item()


@pytest.mark.parametrize("formula", PPL_FORMULAS)
def test_a_resumed_evaluation_runs_only_the_missing_windows_and_ends_equal(
        formula, tiny_llama_dir, tmp_path):
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir).eval()
    ids = torch.randint(0, model.config.vocab_size, (1, 16 * 5),
                        generator=torch.Generator().manual_seed(1))
    key = {"weights_sha256": "w", "formula": formula}
    whole = perplexity(model, ids, 16, formula=formula, progress=WindowLog(tmp_path / "a", key))
    stored = WindowLog(tmp_path / "a", key).values
    assert len(stored) == 5
    if formula == "exact":  # each window's value is its NLL, recomputed another way
        direct = [window_nll(model, ids[:, w * 16:(w + 1) * 16]) for w in range(5)]
        assert all(math.isclose(a, b, rel_tol=1e-5) for a, b in zip(stored, direct))

    died = WindowLog(tmp_path / "b", key)  # a run that died after two windows
    for value in stored[:2]:
        died.append(value)
    ran = []

    def forward(w, batch):
        ran.append(w)
        return model(batch).logits

    resumed = perplexity(model, ids, 16, formula=formula, forward=forward,
                         progress=WindowLog(tmp_path / "b", key))
    assert ran == [2, 3, 4] and resumed.ppl == whole.ppl
    assert WindowLog(tmp_path / "b", key).values == stored
    assert WindowLog(tmp_path / "b", {**key, "weights_sha256": "other"}).values == []


def test_weights_digest_sees_every_bit_but_not_the_visiting_order():
    gen = torch.Generator().manual_seed(0)
    named = [("a", torch.randn(3, 4, generator=gen)), ("b", torch.randn(5, generator=gen)),
             ("c", torch.randn(2, 2, generator=gen).bfloat16())]
    base = weights_digest(named)
    assert weights_digest(list(reversed(named))) == base
    nudged = named[1][1].clone()
    nudged[2] = torch.nextafter(nudged[2], torch.tensor(math.inf))
    assert weights_digest([named[0], ("b", nudged), named[2]]) != base
    assert weights_digest([named[0], ("B", named[1][1]), named[2]]) != base
    assert weights_digest([named[0], ("b", named[1][1].reshape(1, 5)), named[2]]) != base


def test_the_offloaded_model_digests_as_the_loaded_one(tiny_llama_dir):
    from lib.io.offload import OffloadedModel

    loaded = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32)
    streamed = OffloadedModel(tiny_llama_dir, torch.float32, torch.device("cpu"))
    assert (weights_digest(streamed.named_weights())
            == weights_digest(loaded.named_parameters()))
    assert all(p.is_meta for p in streamed.blocks[0].parameters())  # put back after digesting


def test_a_killed_evaluation_resumes_in_a_rerun_and_from_the_saved_model(
        tiny_llama_dir, tmp_path, data_dir):
    """Killed after window 2 of 3: rerunning the command, or evaluating the model it saved,
    runs window 3 only and gives the uninterrupted run's perplexity."""
    def run(save, *flags, env=None):
        return subprocess.run(
            [sys.executable, str(ROOT / "main.py"), "--data_dir", str(data_dir), "--save",
             str(save), *FAST, *flags], cwd=ROOT, capture_output=True, text=True,
            env=dict(os.environ, **(env or {})))

    pruned = ["--model", str(tiny_llama_dir), "--prune_method", "wanda", "--sparsity_ratio",
              "0.5"]
    assert run(tmp_path / "whole", *pruned).returncode == 0
    expected = load_results(tmp_path / "whole", "wanda")["ppl_test"]
    # "offload": pruned and evaluated with --offload (its digest read block by block from
    # disk), resumed in memory from the model it saved
    for name, extra, resume in (
            ("rerun", [], pruned), ("saved", [], ["--model", str(tmp_path / "saved_model")]),
            ("offload", ["--offload"], ["--model", str(tmp_path / "offload_model")])):
        save = tmp_path / name
        killed = run(save, *pruned, *extra, "--save_model", str(tmp_path / f"{name}_model"),
                     env={"WANDA_KILL_AT": "eval_window_2"})
        assert killed.returncode == -9
        done = run(save, *resume)
        assert done.returncode == 0, done.stderr
        assert "evaluation resumes after 2 finished windows of 3" in done.stderr
        method = "wanda" if name == "rerun" else "dense"
        record = load_results(save, method)
        assert record["eval_windows_resumed"] == 2
        # offloaded windows pass the blocks as one batch: equal up to float rounding
        assert math.isclose(record["ppl_test"], expected, rel_tol=0 if not extra else 1e-6)
    assert load_results(tmp_path / "whole", "wanda")["eval_windows_resumed"] == 0


@pytest.mark.parametrize("text", ["", "{", "[]", '"text"', '{"values": [1.0]}',
                                  'KEY_WITH_BAD_VALUES'])
def test_an_unreadable_progress_file_is_ignored_and_rewritten(text, tmp_path, caplog):
    key = {"weights_sha256": "w"}
    log = WindowLog(tmp_path, key)
    if text == "KEY_WITH_BAD_VALUES":
        text = json.dumps({"key": key, "values": ["x"]})
    log.path.write_text(text)
    with caplog.at_level("WARNING"):
        fresh = WindowLog(tmp_path, key)
    assert fresh.values == [] and "ignoring unreadable evaluation progress" in caplog.text
    fresh.append(2.5)
    assert WindowLog(tmp_path, key).values == [2.5]


def test_the_wanda_formula_sums_the_stacked_window_losses(tiny_llama_dir, tmp_path):
    """Wanda's own evaluation: per-window mean loss times seqlen, stacked, summed, divided by
    every window's seqlen tokens, in float32; a resumed run gives exactly that number."""
    import torch.nn.functional as F

    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir).eval()
    ids = torch.randint(0, model.config.vocab_size, (1, 16 * 4),
                        generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        nlls = [F.cross_entropy(model(ids[:, w * 16:(w + 1) * 16]).logits[0, :-1],
                                ids[0, w * 16 + 1:(w + 1) * 16]).float() * 16 for w in range(4)]
    expected = torch.exp(torch.stack(nlls).sum() / (4 * 16)).item()
    key = {"formula": "wanda"}
    died = WindowLog(tmp_path, key)
    died.append(nlls[0].item())
    resumed = perplexity(model, ids, 16, formula="wanda", progress=WindowLog(tmp_path, key))
    assert resumed.ppl == expected and resumed.resumed == 1


def test_config_digest_sees_the_architecture_not_the_provenance(tiny_llama_dir):
    from transformers import AutoConfig

    from lib.evaluation.progress import config_digest

    config = AutoConfig.from_pretrained(tiny_llama_dir)
    base = config_digest(config)
    config._name_or_path, config.use_cache = "/elsewhere", not config.use_cache
    assert config_digest(config) == base
    config.rope_theta = getattr(config, "rope_theta", 10000.0) * 2
    config.rms_norm_eps = config.rms_norm_eps * 2
    assert config_digest(config) != base


def test_an_offloaded_evaluation_resumes_without_rerunning_finished_windows(
        tiny_llama_dir, tmp_path):
    """Resumed at window 3 of 5: blocks run for windows 3 and 4 only, and the logits are the
    loaded model's."""
    from lib.io.offload import OffloadedModel

    loaded = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32).eval()
    streamed = OffloadedModel(tiny_llama_dir, torch.float32, torch.device("cpu"))
    ids = torch.randint(0, loaded.config.vocab_size, (1, 16 * 5),
                        generator=torch.Generator().manual_seed(3))
    walked = []
    final_hidden = streamed._final_hidden
    streamed._final_hidden = lambda batches: (walked.append(len(batches)),
                                              final_hidden(batches))[1]
    key = {"formula": "exact"}
    whole = perplexity(loaded, ids, 16, progress=WindowLog(tmp_path / "a", key))
    died = WindowLog(tmp_path / "b", key)
    for value in WindowLog(tmp_path / "a", key).values[:3]:
        died.append(value)
    resumed = perplexity(streamed.model, ids, 16, forward=streamed.window_logits(ids, 16, 5),
                         progress=WindowLog(tmp_path / "b", key))
    assert walked == [2] and resumed.resumed == 3
    assert math.isclose(resumed.ppl, whole.ppl, rel_tol=1e-6)
