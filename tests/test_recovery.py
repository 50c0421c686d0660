"""LoRA recovery after pruning (lib/recovery/lora.py): the loss falls, training sees the masked model
that the merge produces, every zero survives the merge, a resumed run ends where an
uninterrupted one does, and bad flags end in one line."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from test_cli import FAST, error_line, load_results
from transformers import AutoModelForCausalLM, AutoTokenizer

import main
from lib.arch.matrices import block_parts
from lib.recovery import lora as recovery
from lib.recovery.plan import RecoveryPlan

ROOT = Path(__file__).resolve().parents[1]
TRAIN = ["--recover_steps", "12", "--recover_batch", "2", "--recover_seqlen", "32",
         "--recover_lr", "3e-3"]


def pruned_tiny(model_dir) -> tuple:
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for block in model.model.layers:
            for linear in block_parts(block).linears.values():
                linear.weight[torch.rand(linear.weight.shape, generator=gen) < 0.5] = 0
    linears = {f"model.layers.{i}.{n}": m for i, b in enumerate(model.model.layers)
               for n, m in block_parts(b).linears.items()}
    return model, linears


def plan(mode="lora", steps=8) -> RecoveryPlan:
    return RecoveryPlan(mode, steps, 3e-3, 4, 8.0, (), 2, 32, 4, 0)


def windows(tokenizer, data_dir, p) -> recovery.Windows:
    from lib.io import data

    return recovery.Windows(data.c4_documents(data_dir)[:200], set(), tokenizer, p)


def test_training_sees_the_masked_model_the_merge_gives(tiny_llama_dir, tmp_path, data_dir):
    model, linears = pruned_tiny(tiny_llama_dir)
    masks = {n: m.weight != 0 for n, m in linears.items()}
    p = plan()
    tok = AutoTokenizer.from_pretrained(tiny_llama_dir)
    wrapped = recovery.attach(model, linears, p)
    recovery.train(model, wrapped, windows(tok, data_dir, p), p, str(tmp_path), "x", {})
    ids = torch.randint(0, 300, (1, 24), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        trained = model(ids).logits
        recovery.detach(model, wrapped, merge=True)
        merged = model(ids).logits
    assert torch.allclose(trained, merged, rtol=1e-4, atol=1e-5)
    assert any(recovery.factors(m)[1].abs().sum() > 0 for m in wrapped.values())
    for name, linear in linears.items():  # every zero of the mask still zero, no other zero
        assert torch.equal(linear.weight == 0, ~masks[name]), name


def test_dense_mode_is_peft_lora_the_plain_adapter_sum(tiny_llama_dir):
    """lora_dense is peft's LoRA layer: x W^T + b + (alpha / rank) x A^T B^T, recomputed here from
    the factors; its effective weight is dense."""
    model, linears = pruned_tiny(tiny_llama_dir)
    name, linear = next(iter(linears.items()))
    weight, bias = linear.weight.detach().clone(), linear.bias
    wrapped = recovery.attach(model, {name: linear}, plan("lora_dense"))
    module = wrapped[name]
    a, b = recovery.factors(module)
    assert torch.equal(b, torch.zeros_like(b))  # initialised as the masked adapter is
    torch.nn.init.normal_(b)
    x = torch.randn(3, linear.in_features)
    expected = x @ weight.T + 2.0 * (x @ a.T @ b.T) + (0 if bias is None else bias)
    assert torch.allclose(module(x), expected, rtol=1e-5, atol=1e-6)
    assert [p for p in model.parameters() if p.requires_grad] == [a, b]
    assert ((weight + 2.0 * b @ a) != 0).float().mean() > 0.99  # dense: the zeros are gone
    recovery.detach(model, wrapped, merge=False)
    assert model.get_submodule(name) is linear


@pytest.mark.parametrize("mode", ["lora", "lora_dense"])
def test_the_loss_falls_and_the_run_records_it(mode, tiny_llama_dir, tmp_path, data_dir):
    assert main.main(["--model", str(tiny_llama_dir), "--data_dir", str(data_dir), "--save",
                      str(tmp_path), *FAST, "--prune_method", "wanda", "--sparsity_ratio", "0.5",
                      "--recover", mode, *TRAIN]) == 0
    res = load_results(tmp_path, "wanda")
    losses = [float(line.split(",")[1]) for line in
              (tmp_path / "recovery_wanda.csv").read_text().splitlines()[1:]]
    assert len(losses) == 12 and sum(losses[-4:]) < sum(losses[:4])
    rec = res["recovery"]
    assert res["status"] == "done" and rec["train_tokens"] == 12 * 2 * 32
    assert rec["sparse"] == (mode == "lora")  # lora_dense evaluates a dense model
    if mode == "lora":
        assert rec["actual_sparsity_after"] == res["actual_sparsity"] == 0.5
    assert res["ppl_recovered"] == rec["ppl_after"] and rec["ppl_before"] == res["ppl_test"]
    assert (tmp_path / "recovery_wanda.png").stat().st_size > 0
    assert not (tmp_path / "recovery_wanda.ckpt").exists()


def test_a_resumed_recovery_ends_where_an_uninterrupted_one_does(tiny_llama_dir, tmp_path,
                                                                 data_dir):
    def argv(name):
        return [sys.executable, str(ROOT / "main.py"), "--model", str(tiny_llama_dir),
                "--data_dir", str(data_dir), "--save", str(tmp_path / name), *FAST,
                "--prune_method", "wanda", "--sparsity_ratio", "0.5", "--recover", "lora",
                *TRAIN, "--recover_every", "4", "--save_model", str(tmp_path / f"{name}_model")]

    assert subprocess.run(argv("whole"), cwd=ROOT, capture_output=True).returncode == 0
    killed = subprocess.run(argv("resumed"), cwd=ROOT, capture_output=True,
                            env=dict(os.environ, WANDA_KILL_AT="recovery_step_8"))
    assert killed.returncode == -9 and (tmp_path / "resumed" / "recovery_wanda.ckpt").exists()
    assert subprocess.run(argv("resumed"), cwd=ROOT, capture_output=True).returncode == 0
    whole = load_file(tmp_path / "whole_model" / "model.safetensors")
    resumed = load_file(tmp_path / "resumed_model" / "model.safetensors")
    assert whole.keys() == resumed.keys()
    assert all(torch.equal(whole[k], resumed[k]) for k in whole)
    a, b = (load_results(tmp_path / n, "wanda") for n in ("whole", "resumed"))
    assert a["ppl_recovered"] == b["ppl_recovered"]


def test_a_saved_pruned_model_is_recovered_later(tiny_llama_dir, tmp_path, data_dir):
    saved = tmp_path / "pruned"
    assert main.main(["--model", str(tiny_llama_dir), "--data_dir", str(data_dir), "--save",
                      str(tmp_path / "a"), *FAST, "--prune_method", "wanda",
                      "--sparsity_ratio", "0.5", "--save_model", str(saved)]) == 0
    assert main.main(["--model", str(saved), "--data_dir", str(data_dir), "--save",
                      str(tmp_path / "b"), *FAST, "--recover", "lora", *TRAIN]) == 0
    res = load_results(tmp_path / "b", "dense")
    assert res["actual_sparsity"] == res["recovery"]["actual_sparsity_after"] == 0.5


@pytest.mark.parametrize("flags,needle", [
    (["--recover_steps", "-1"], "--recover_steps -1"),
    (["--lora_rank", "0"], "--lora_rank 0"),
    (["--lora_targets", "q_proj,nope_proj"], "--lora_targets nope_proj"),
    (["--recover", "lora_dense", "--save_model", "x"], "saves no model"),
])
def test_bad_recovery_flags_end_in_one_line(flags, needle, tiny_llama_dir, tmp_path, data_dir,
                                            capsys):
    argv = ["--model", str(tiny_llama_dir), "--data_dir", str(data_dir), "--save",
            str(tmp_path), *FAST, "--prune_method", "wanda", "--sparsity_ratio", "0.5"]
    if "--recover" not in flags:
        argv += ["--recover", "lora"]
    assert main.main(argv + flags) == 2
    assert needle in error_line(capsys)
    assert not (tmp_path / "results_wanda.json").exists()


def test_recovering_a_model_without_masks_is_refused(tiny_llama_dir, tmp_path, data_dir, capsys):
    assert main.main(["--model", str(tiny_llama_dir), "--data_dir", str(data_dir), "--save",
                      str(tmp_path), *FAST, "--recover", "lora"]) == 2
    assert "--recover needs pruning masks" in error_line(capsys)
