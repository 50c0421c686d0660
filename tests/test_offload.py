"""--offload against the in-memory path: the same masks, weights, sparsity and perplexity for
every method; a peak memory that does not grow with the number of blocks."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from test_cli import FAST, error_line, load_results

import main
from lib.pruning.methods import METHODS

ROOT = Path(__file__).resolve().parents[1]


def saved_tensors(folder: Path) -> dict[str, torch.Tensor]:
    tensors = {}
    for file in sorted(folder.glob("*.safetensors")):
        tensors.update(load_file(file))
    return tensors


def both_ways(model_dir, tmp_path, data_dir, *flags) -> tuple[dict, dict, dict, dict]:
    out = {}
    for mode in ("memory", "offload"):
        save = tmp_path / mode
        argv = ["--model", str(model_dir), "--data_dir", str(data_dir), "--save", str(save),
                *FAST, *flags, "--save_model", str(save / "model")]
        assert main.main(argv + (["--offload"] if mode == "offload" else [])) == 0
        method = flags[flags.index("--prune_method") + 1] if flags else "dense"
        out[mode] = (load_results(save, method), saved_tensors(save / "model"))
    return out["memory"][0], out["offload"][0], out["memory"][1], out["offload"][1]


def assert_same(memory, offload, w_memory, w_offload) -> None:
    for key in ("ppl_test", "actual_sparsity", "sparsity_per_layer",
                "sparsity_target_per_layer"):
        assert memory[key] == offload[key], key
    assert offload["offload"] is True and memory["offload"] is False
    assert set(w_memory) == set(w_offload)
    for name in w_memory:
        assert torch.equal(w_memory[name], w_offload[name]), name


@pytest.mark.parametrize("method", [
    pytest.param(m, marks=() if m == "wanda" else pytest.mark.slow) for m in METHODS])
def test_offload_is_bit_identical_for_every_method(method, tiny_llama_dir, tmp_path, data_dir):
    assert_same(*both_ways(tiny_llama_dir, tmp_path, data_dir, "--prune_method", method,
                           "--sparsity_ratio", "0.5"))


@pytest.mark.parametrize("flags", [  # the quick loop keeps the OWL case
    pytest.param(["--prune_method", "sparsegpt", "--sparsity_type", "2:4"], marks=pytest.mark.slow),
    ["--prune_method", "wanda", "--sparsity_ratio", "0.6", "--layer_sparsity", "owl"],
    pytest.param([], marks=pytest.mark.slow),  # dense
])
def test_offload_gemma3_patterns_owl_and_dense(flags, tiny_gemma3_dir, tmp_path, data_dir):
    assert_same(*both_ways(tiny_gemma3_dir, tmp_path, data_dir, *flags))


def test_offload_without_save_model_evaluates_the_pruned_blocks(tiny_llama_dir, tmp_path,
                                                                data_dir):
    """The pruned blocks go to a scratch folder that evaluation reads back, then it is removed."""
    ppl = {}
    for mode in ("memory", "offload"):
        save = tmp_path / mode
        argv = ["--model", str(tiny_llama_dir), "--data_dir", str(data_dir), "--save", str(save),
                *FAST, "--prune_method", "wanda", "--sparsity_ratio", "0.5"]
        assert main.main(argv + (["--offload"] if mode == "offload" else [])) == 0
        ppl[mode] = load_results(save, "wanda")["ppl_test"]
        assert [p.name for p in save.iterdir() if p.is_dir()] == []
    assert ppl["memory"] == ppl["offload"]


def test_offload_refuses_zero_shot(tiny_llama_dir, tmp_path, data_dir, capsys):
    assert main.main(["--model", str(tiny_llama_dir), "--data_dir", str(data_dir), "--save",
                      str(tmp_path), "--offload", "--eval_zero_shot"]) == 2
    assert "--offload" in error_line(capsys)


def test_offload_refuses_a_dtype_torch_cannot_read_in_one_line(tiny_llama_dir, tmp_path,
                                                               data_dir, capsys):
    from test_safetensors_io import write_raw

    model = tmp_path / "model"
    shutil.copytree(tiny_llama_dir, model)
    write_raw(model / "extra.safetensors", "F6_E2M3", 6)
    assert main.main(["--model", str(model), "--data_dir", str(data_dir), "--save",
                      str(tmp_path / "out"), *FAST, "--offload"]) == 2
    line = error_line(capsys)
    assert "extra.safetensors" in line and "tensor w " in line and "F6_E2M3" in line


def peak_bytes(model_dir: Path, tmp_path: Path, data_dir, offload: bool) -> int:
    save = tmp_path / f"{model_dir.name}_{offload}"
    code = "import sys, main; sys.exit(main.main(sys.argv[1:]))"
    argv = ["--model", str(model_dir), "--data_dir", str(data_dir), "--save", str(save),
            "--nsamples", "2", "--seqlen", "32", "--eval_windows", "1", "--prune_method",
            "wanda", "--sparsity_ratio", "0.5"] + (["--offload"] if offload else [])
    done = subprocess.run([sys.executable, "-c", code, *argv], cwd=ROOT, capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads((save / "results_wanda.json").read_text())["peak_memory_bytes"]


@pytest.mark.slow
def test_offloaded_peak_memory_does_not_grow_with_depth(tmp_path, tokenizer, data_dir):
    """Blocks of 64 MiB (float32): in memory, 8 blocks cost about 6 blocks more than 2;
    offloaded, the two peaks are within one block of each other."""
    import tiny_models

    block = None
    dirs = {}
    for layers in (2, 8):
        config = tiny_models.tiny_llama_config(len(tokenizer), hidden_size=1024,
                                               intermediate_size=4096, num_hidden_layers=layers,
                                               num_attention_heads=8, num_key_value_heads=8)
        dirs[layers] = tiny_models.save_tiny_model(config, tokenizer, tmp_path / f"l{layers}")
        block = (4 * 1024 * 1024 + 3 * 1024 * 4096) * 4
    memory = {n: peak_bytes(d, tmp_path, data_dir, False) for n, d in dirs.items()}
    streamed = {n: peak_bytes(d, tmp_path, data_dir, True) for n, d in dirs.items()}
    assert memory[8] - memory[2] > 4 * block
    assert abs(streamed[8] - streamed[2]) < block
