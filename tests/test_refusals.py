"""A new user's first hour: bad input is refused before anything heavy loads, finished runs are
skipped without torch, default save directories never collide, --help says what to type."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from test_cli import FAST, error_line, run_cli

import main
from lib.io import hub, models
from lib.io.embedded import EMBEDDED
from lib.run.cli import build_parser
from lib.run.errors import EXIT_SKIPPED

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def no_loading(monkeypatch):
    """Fail the test if anything parses weights, a GGUF or a tokenizer."""
    import transformers

    def refuse(*args, **kwargs):
        raise AssertionError("a model, config or tokenizer was loaded before the refusal")
    for cls in (transformers.AutoModelForCausalLM, transformers.AutoConfig,
                transformers.AutoTokenizer):
        monkeypatch.setattr(cls, "from_pretrained", refuse)
    monkeypatch.setattr(models, "load_model", refuse)
    monkeypatch.setattr(models, "load_tokenizer", refuse)


def smollm2_gguf() -> str:
    return str(EMBEDDED["smollm2-135m"].gguf_path())


@pytest.mark.parametrize("flags,needle", [
    (["--device", "cuda"], "--device cuda"),
    (["--data_dir", "/no/such/dir"], "no such directory"),
    (["--seqlen", "100000"], "context of 8192"),
    (["--prune_method", "wanda", "--sparsity_ratio", "0.5", "--nsamples", "0"], "--nsamples"),
])
def test_refused_before_any_loading(flags, needle, no_loading, data_dir, tmp_path, capsys):
    """The GGUF file itself (not the converted copy): its header alone answers the context."""
    if "--device" in flags and (Path("/dev/nvidiactl").exists()):
        pytest.skip("this machine has an NVIDIA driver")
    argv = ["--model", smollm2_gguf(), "--data_dir", str(data_dir), "--save", str(tmp_path),
            *flags]
    assert main.main(argv) == 2
    assert needle in error_line(capsys)


def test_missing_data_file_refused_before_loading(no_loading, tmp_path, capsys):
    (tmp_path / "wikitext-2-raw").mkdir()
    (tmp_path / "wikitext-2-raw" / "wiki.test.raw").write_text("text")
    argv = ["--model", smollm2_gguf(), "--data_dir", str(tmp_path), "--prune_method", "wanda",
            "--sparsity_ratio", "0.5", "--save", str(tmp_path / "out")]
    assert main.main(argv) == 2
    assert "no C4 shard" in error_line(capsys)


def test_unreachable_hub_model_is_one_line(no_loading, monkeypatch, data_dir, tmp_path, capsys):
    monkeypatch.setattr(hub, "_state", {"reachable": False})
    argv = ["--model", "some-org/some-model-not-cached", "--data_dir", str(data_dir),
            "--save", str(tmp_path)]
    assert main.main(argv) == 2
    assert "Hub is unreachable" in error_line(capsys)


def test_unreachable_hub_data_fails_before_the_model(tiny_llama_dir, monkeypatch, tmp_path,
                                                     capsys):
    """No --data_dir and no network: the data is looked for (offline mode, one line) before
    the weights load."""
    monkeypatch.setattr(hub, "_state", {})
    monkeypatch.setattr(hub.socket, "create_connection", _no_network)
    monkeypatch.setattr(models, "load_model", _never)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))  # an empty Hub cache
    assert main.main(["--model", str(tiny_llama_dir), "--save", str(tmp_path), *FAST]) == 2
    assert "--data_dir" in error_line(capsys)


def _no_network(*args, **kwargs):
    raise OSError("no network")


def _never(*args, **kwargs):
    raise AssertionError("the model was loaded before the data was found")


def test_skip_decides_without_torch(tiny_llama_dir, tmp_path, data_dir):
    flags = ["--prune_method", "wanda", "--sparsity_ratio", "0.5"]
    assert run_cli(tiny_llama_dir, tmp_path, data_dir, *flags) == 0
    argv = ["--model", str(tiny_llama_dir), "--data_dir", str(data_dir), "--save",
            str(tmp_path), *FAST, *flags, "--skip_if_done"]
    code = ("import sys, main; rc = main.main(sys.argv[1:]); "
            "heavy = [m for m in ('torch', 'transformers') if m in sys.modules]; "
            "print('heavy', heavy); sys.exit(rc)")
    done = subprocess.run([sys.executable, "-c", code, *argv], cwd=ROOT, capture_output=True,
                          text=True)
    assert done.returncode == EXIT_SKIPPED, done.stderr  # a skip is its exit status
    assert "skip:" in done.stdout and "heavy []" in done.stdout


def test_default_save_dirs_differ_by_budget(tiny_llama_dir, tmp_path, data_dir, monkeypatch):
    """Two budgets of the same method and pattern both run with the default --save."""
    monkeypatch.chdir(tmp_path)
    common = ["--model", str(tiny_llama_dir), "--data_dir", str(data_dir), "--seqlen", "32",
              "--eval_windows", "2", "--prune_method", "wanda", "--sparsity_ratio", "0.5"]
    assert main.main([*common, "--nsamples", "2"]) == 0
    assert main.main([*common, "--nsamples", "3"]) == 0
    found = sorted(p.parent.name for p in tmp_path.rglob("results_wanda.json"))
    assert found == ["c4-2x32_seed0_eval2_fp32", "c4-3x32_seed0_eval2_fp32"]
    records = [json.loads(p.read_text()) for p in tmp_path.rglob("results_wanda.json")]
    assert sorted(r["nsamples"] for r in records) == [2, 3]


def test_help_gives_every_default_and_an_example():
    parser = build_parser()
    text = parser.format_help()
    assert "examples:" in text and "python main.py" in text
    for action in parser._actions:
        if action.dest == "help":
            continue
        assert "default" in (action.help or ""), action.option_strings
