"""The whole CLI, in process, on tiny random LLaMA (GQA), OPT, Gemma 2 and Gemma 3 models."""
from __future__ import annotations

import json
import math

import pytest
import torch
from transformers import AutoModelForCausalLM

import main
from lib.pruning.methods import DENSE, METHODS, all_options
from lib.pruning.prune import find_linears
from lib.run.errors import UserError
from lib.sweeps.entries import parse_entry

FAST = ["--nsamples", "4", "--seqlen", "32", "--eval_windows", "3"]


def run_cli(model_dir, save, data_dir, *extra) -> int:
    return main.main(["--model", str(model_dir), "--data_dir", str(data_dir),
                      "--save", str(save), *FAST, *extra])


def load_results(save, method):
    return json.loads((save / f"results_{method}.json").read_text())


def check_exact_run(save, method, ratio=0.5) -> dict:
    """A finished run that pruned every block to exactly `ratio`, with its files."""
    res = load_results(save, method)
    assert res["status"] == "done" and math.isfinite(res["ppl_test"])
    assert res["actual_sparsity"] == ratio
    assert set(res["sparsity_per_layer"]) == {ratio}
    assert set(res["sparsity_target_per_layer"]) == {ratio}
    for key in ("model", "method", "sparsity_type", "sparsity_ratio", "actual_sparsity",
                "ppl_test", "seqlen", "nsamples", "seed", "calib_dataset", "eval_windows",
                "prune_seconds", "peak_memory_bytes", "device", "dtype", "versions", "machine",
                "method_options"):
        assert key in res, key
    assert set(res["method_options"]) == {o.name for o in METHODS[method].declared_options}
    log = (save / f"log_{method}.txt").read_text().splitlines()
    assert log[0] == "method\tactual_sparsity\tppl_test"
    assert log[1].split("\t")[0] == method
    return res


# the Gemma 3 and MoE thirds run in the full suite only (the quick loop keeps one family per
# method); qwen3_moe: every method on fused experts, each expert from its routed tokens
@pytest.mark.parametrize("family", ["llama", pytest.param("gemma3", marks=pytest.mark.slow),
                                    pytest.param("qwen3_moe", marks=pytest.mark.slow)])
@pytest.mark.parametrize("method", list(METHODS))
@pytest.mark.parametrize("kind", ["unstructured", "2:4"])
def test_every_method_prunes_exactly(family, method, kind, request, tmp_path, data_dir):
    """Every entry of the method table, through the CLI: a new method is covered here."""
    model_dir = request.getfixturevalue(f"tiny_{family}_dir")
    assert run_cli(model_dir, tmp_path, data_dir, "--prune_method", method,
                   "--sparsity_ratio", "0.5", "--sparsity_type", kind) == 0
    check_exact_run(tmp_path, method)


@pytest.mark.parametrize("family", ["opt", "gemma2"])
@pytest.mark.parametrize("method", ["wanda", "sparsegpt"])
def test_other_families_and_wider_groups(family, method, request, tmp_path, data_dir):
    model_dir = request.getfixturevalue(f"tiny_{family}_dir")
    assert run_cli(model_dir, tmp_path, data_dir, "--prune_method", method,
                   "--sparsity_type", "4:8") == 0
    check_exact_run(tmp_path, method)


def test_variant_within_tolerance(tiny_llama_dir, tmp_path, data_dir):
    assert run_cli(tiny_llama_dir, tmp_path, data_dir, "--prune_method", "wanda",
                   "--sparsity_ratio", "0.6", "--use_variant") == 0
    res = load_results(tmp_path, "wanda")
    assert abs(res["actual_sparsity"] - 0.6) <= 1e-3


def test_save_model_round_trip(tiny_llama_dir, tmp_path, data_dir):
    saved = tmp_path / "pruned"
    assert run_cli(tiny_llama_dir, tmp_path, data_dir, "--prune_method", "wanda",
                   "--sparsity_ratio", "0.5", "--save_model", str(saved)) == 0
    res = load_results(tmp_path, "wanda")
    model = AutoModelForCausalLM.from_pretrained(saved)
    linears = [lin for block in model.model.layers for lin in find_linears(block).values()]
    zeros = sum(int((lin.weight == 0).sum()) for lin in linears)
    assert zeros / sum(lin.weight.numel() for lin in linears) == res["actual_sparsity"]
    # the saved model evaluates to the same perplexity as the pruned one in memory
    assert main.main(["--model", str(saved), "--data_dir", str(data_dir), "--save",
                      str(tmp_path / "reload"), *FAST]) == 0
    assert math.isclose(load_results(tmp_path / "reload", "dense")["ppl_test"], res["ppl_test"],
                        rel_tol=1e-5)


def test_dense_run_and_ppl_formula(tiny_opt_dir, tmp_path, data_dir):
    assert run_cli(tiny_opt_dir, tmp_path / "a", data_dir) == 0
    assert run_cli(tiny_opt_dir, tmp_path / "b", data_dir, "--ppl_formula", "wanda") == 0
    a, b = load_results(tmp_path / "a", "dense"), load_results(tmp_path / "b", "dense")
    assert a["actual_sparsity"] == 0 and math.isclose(a["ppl_test"], b["ppl_test"], rel_tol=1e-4)


def error_line(capsys) -> str:
    """The run's stderr ends with exactly one `error:` line (library warnings may precede)."""
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if line.startswith("error:")]
    assert len(errors) == 1 and err[-1] == errors[0], err
    return errors[0]


@pytest.mark.parametrize("args,needle", [
    (["--prune_method", "nonsense"], "unknown --prune_method"),
    (["--prune_method", "wanda", "--sparsity_ratio", "1.0"], "outside [0, 1)"),
    (["--prune_method", "wanda", "--sparsity_ratio", "-0.5"], "outside [0, 1)"),
    (["--prune_method", "wanda", "--sparsity_type", "5:4"], "0 < N < M"),
    (["--prune_method", "wanda", "--sparsity_type", "0:4"], "0 < N < M"),
    (["--prune_method", "sparsegpt", "--sparsity_type", "2:7"], "not a multiple of 7"),
    (["--prune_method", "wanda", "--sparsity_type", "2:4", "--sparsity_ratio", "0.3"],
     "conflicts"),
    (["--prune_method", "wanda", "--nsamples", "0"], "--nsamples"),
    (["--prune_method", "magnitude", "--sparsity_ratio", "0.5", "--use_variant"], "variant"),
    (["--prune_method", "sparsegpt", "--sparsity_ratio", "0.5", "--use_variant"], "variant"),
    (["--prune_method", "sparsegpt", "--sparsity_ratio", "0.5", "--save_stats", "s.st"],
     "--save_stats"),
    (["--tasks", "rte"], "needs --eval_zero_shot"),
    (["--eval_zero_shot", "--zero_shot_limit", "0"], "--zero_shot_limit"),
    (["--eval_zero_shot", "--tasks_include_path", "/no/such/dir"], "not a directory"),
    (["--dtype", "float8"], "invalid choice"),
])
def test_bad_flags_one_line(args, needle, tiny_llama_dir, tmp_path, data_dir, capsys):
    with pytest.raises(SystemExit) if "--dtype" in args else _no_raise():
        rc = main.main(["--model", str(tiny_llama_dir), "--data_dir", str(data_dir),
                        "--save", str(tmp_path), *args])
        assert rc == 2
    assert needle in error_line(capsys)


class _no_raise:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_bad_paths_and_context(tiny_llama_dir, tmp_path, data_dir, capsys):
    assert main.main(["--model", str(tmp_path / "missing"), "--data_dir", str(data_dir)]) == 2
    assert "no such model" in error_line(capsys)
    assert main.main(["--model", str(tiny_llama_dir), "--data_dir", str(tmp_path)]) == 2
    assert "wiki.test.raw" in error_line(capsys)
    assert main.main(["--model", str(tiny_llama_dir), "--data_dir", str(data_dir),
                      "--seqlen", "512"]) == 2
    assert "context of 256" in error_line(capsys)


def test_unsupported_architecture(tmp_path, tokenizer, data_dir, capsys):
    import tiny_models
    from transformers import GPT2Config

    config = GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=1, n_head=2, n_positions=64)
    tiny_models.save_tiny_model(config, tokenizer, tmp_path / "gpt2")
    assert main.main(["--model", str(tmp_path / "gpt2"), "--data_dir", str(data_dir)]) == 2
    assert "unsupported architecture GPT2LMHeadModel" in error_line(capsys)


def test_other_configuration_not_replaced(tiny_llama_dir, tmp_path, data_dir, capsys):
    assert run_cli(tiny_llama_dir, tmp_path, data_dir, "--prune_method", "wanda",
                   "--sparsity_ratio", "0.5") == 0
    first = load_results(tmp_path, "wanda")
    rc = run_cli(tiny_llama_dir, tmp_path, data_dir, "--prune_method", "wanda",
                 "--sparsity_ratio", "0.5", "--seed", "1")
    assert rc == 2 and "different configuration" in error_line(capsys)
    assert load_results(tmp_path, "wanda") == first
    assert run_cli(tiny_llama_dir, tmp_path, data_dir, "--prune_method", "wanda",
                   "--sparsity_ratio", "0.5", "--seed", "1", "--overwrite") == 0
    assert load_results(tmp_path, "wanda")["seed"] == 1


SELECTIVITY_METHODS = [m for m in METHODS if "selectivity_floor" in {o.name for o in
                                                                       METHODS[m].options}]


@pytest.mark.parametrize("method", SELECTIVITY_METHODS)
def test_selectivity_methods_with_variant_and_options(method, tiny_llama_dir, tmp_path,
                                                      data_dir):
    assert run_cli(tiny_llama_dir, tmp_path, data_dir, "--prune_method", method,
                   "--sparsity_ratio", "0.5", "--selectivity_floor", "0.5", "--use_variant") == 0
    res = load_results(tmp_path, method)
    assert abs(res["actual_sparsity"] - 0.5) <= 1e-3
    assert res["method_options"]["selectivity_floor"] == 0.5 and math.isfinite(res["ppl_test"])


FOREIGN = [(m.name, o) for m in (DENSE, *METHODS.values()) for o in all_options()
           if o not in m.options]


@pytest.mark.parametrize("method,option", FOREIGN, ids=[f"{m}-{o.name}" for m, o in FOREIGN])
def test_an_option_the_method_does_not_read_is_refused(method, option, tiny_llama_dir, tmp_path,
                                                       data_dir, capsys):
    """On the command line and in a sweep entry alike, in one line naming the option."""
    value = str(option.choices[-1] if option.choices else option.default)
    ratio = ["--sparsity_ratio", "0.5"] if method != DENSE.name else []
    assert main.main(["--model", str(tiny_llama_dir), "--data_dir", str(data_dir), "--save",
                      str(tmp_path), "--prune_method", method, *ratio, option.flag, value]) == 2
    assert option.flag in error_line(capsys)
    with pytest.raises(UserError, match=option.name):
        parse_entry(f"{method}:{option.name}={value}")


@pytest.mark.parametrize("method", list(METHODS))
def test_a_pruning_method_at_sparsity_0_is_refused(method, tiny_llama_dir, tmp_path, data_dir,
                                                   capsys):
    assert main.main(["--model", str(tiny_llama_dir), "--data_dir", str(data_dir), "--save",
                      str(tmp_path), "--prune_method", method]) == 2
    assert "sparsity 0 prunes nothing" in error_line(capsys)
    assert not list(tmp_path.iterdir())  # nothing written


def test_save_stats_round_trip(tiny_llama_dir, tmp_path, data_dir):
    from safetensors.torch import load_file

    path = tmp_path / "stats.safetensors"
    assert run_cli(tiny_llama_dir, tmp_path, data_dir, "--prune_method", "wanda",
                   "--sparsity_ratio", "0.5", "--save_stats", str(path), "--idf_offset", "0.5") == 0
    stats = load_file(path)
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    names = [n for n, m in model.named_modules()
             if isinstance(m, torch.nn.Linear) and ".layers." in n]
    assert len(names) == 14
    for name in names:
        columns = dict(model.named_modules())[name].in_features
        for field in ("norm", "active_frac", "idf", "spikiness"):
            assert stats[f"{name}.{field}"].shape == (columns,)
            assert stats[f"{name}.{field}"].dtype == torch.float32
        assert stats[f"{name}.threshold"].dim() == 0 and stats[f"{name}.tokens"].item() == 4 * 32
        n = stats[f"{name}.active_frac"] * 128
        assert torch.allclose(stats[f"{name}.idf"], torch.log(129 / (n + 1)) + 0.5, atol=1e-5)
    assert torch.equal(stats["model.layers.0.self_attn.q_proj.norm"],
                       stats["model.layers.0.self_attn.v_proj.norm"])


def test_save_stats_needs_statistics(tiny_llama_dir, tmp_path, data_dir, capsys):
    assert run_cli(tiny_llama_dir, tmp_path, data_dir, "--prune_method", "magnitude",
                   "--sparsity_ratio", "0.5", "--save_stats", str(tmp_path / "s.st")) == 2
    assert "--save_stats" in error_line(capsys)
