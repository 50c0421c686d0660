from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import tiny_models  # noqa: E402


@pytest.fixture(scope="session")
def data_dir() -> Path:
    path = tiny_models.shared_data_dir()
    if not (path / "wikitext-2-raw" / "wiki.test.raw").is_file():
        pytest.fail(f"shared data not found at {path}")
    return path


@pytest.fixture(scope="session")
def tokenizer(data_dir):
    text = (data_dir / "wikitext-2-raw" / "wiki.valid.raw").read_text(encoding="utf-8")[:200_000]
    return tiny_models.train_tokenizer(text)


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory, tokenizer) -> Path:
    config = tiny_models.tiny_llama_config(len(tokenizer))
    return tiny_models.save_tiny_model(config, tokenizer, tmp_path_factory.mktemp("tiny_llama"))


@pytest.fixture(scope="session")
def tiny_opt_dir(tmp_path_factory, tokenizer) -> Path:
    config = tiny_models.tiny_opt_config(len(tokenizer))
    return tiny_models.save_tiny_model(config, tokenizer, tmp_path_factory.mktemp("tiny_opt"))


def _tiny_decoder_dir(tmp_path_factory, tokenizer, family: str, **overrides) -> Path:
    config = tiny_models.tiny_decoder_config(family, len(tokenizer), **overrides)
    return tiny_models.save_tiny_model(config, tokenizer, tmp_path_factory.mktemp(f"tiny_{family}"))


@pytest.fixture(scope="session")
def tiny_qwen2_dir(tmp_path_factory, tokenizer) -> Path:
    return _tiny_decoder_dir(tmp_path_factory, tokenizer, "qwen2")


@pytest.fixture(scope="session")
def tiny_qwen3_dir(tmp_path_factory, tokenizer) -> Path:
    return _tiny_decoder_dir(tmp_path_factory, tokenizer, "qwen3")


@pytest.fixture(scope="session")
def tiny_mistral_dir(tmp_path_factory, tokenizer) -> Path:
    # a window shorter than the tests' 64 tokens, so that a wrong mask shows
    return _tiny_decoder_dir(tmp_path_factory, tokenizer, "mistral", sliding_window=16)


@pytest.fixture(scope="session")
def tiny_gemma2_dir(tmp_path_factory, tokenizer) -> Path:
    config = tiny_models.tiny_gemma2_config(len(tokenizer))
    return tiny_models.save_tiny_model(config, tokenizer, tmp_path_factory.mktemp("tiny_gemma2"))


@pytest.fixture(scope="session")
def tiny_gemma3_dir(tmp_path_factory, tokenizer) -> Path:
    config = tiny_models.tiny_gemma3_config(len(tokenizer))
    return tiny_models.save_tiny_model(config, tokenizer, tmp_path_factory.mktemp("tiny_gemma3"))


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    return tiny_models.embedded_hf_dir("smollm2-135m")


@pytest.fixture(scope="session")
def gemma3_dir() -> Path:
    return tiny_models.embedded_hf_dir("gemma3-270m")


def _tiny_moe_dir(tmp_path_factory, tokenizer, family: str) -> Path:
    from transformers import AutoModelForCausalLM

    config = tiny_models.tiny_moe_config(family, len(tokenizer))
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)
    tiny_models.spread_experts(model)
    out = tmp_path_factory.mktemp(f"tiny_{family}")
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_qwen3_moe_dir(tmp_path_factory, tokenizer) -> Path:
    return _tiny_moe_dir(tmp_path_factory, tokenizer, "qwen3_moe")


@pytest.fixture(scope="session")
def tiny_mixtral_dir(tmp_path_factory, tokenizer) -> Path:
    return _tiny_moe_dir(tmp_path_factory, tokenizer, "mixtral")
