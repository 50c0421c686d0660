"""Tiny random models and a small trained tokenizer, saved as local HF directories."""
from __future__ import annotations

from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    return ROOT.parent / "shared" / "data"


def train_tokenizer(text: str, vocab_size: int = 320):
    """A byte-level BPE trained on `text`, wrapped for transformers (no Hub needed)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<eos>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([text], trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>")


def tiny_llama_config(vocab_size: int, **overrides):
    from transformers import LlamaConfig

    settings = dict(vocab_size=vocab_size, hidden_size=64, intermediate_size=128,
                    num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                    max_position_embeddings=256, tie_word_embeddings=False)
    settings.update(overrides)
    return LlamaConfig(**settings)


def tiny_opt_config(vocab_size: int):
    from transformers import OPTConfig

    return OPTConfig(vocab_size=vocab_size, hidden_size=64, ffn_dim=128, num_hidden_layers=2,
                     num_attention_heads=4, max_position_embeddings=256, word_embed_proj_dim=64,
                     enable_bias=True)


def save_tiny_model(config, tokenizer, out_dir: Path, seed: int = 0) -> Path:
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def smollm2_hf_dir() -> Path:
    """SmolLM2-135M from the GGUF, converted once to a plain HF directory (dequantizing the
    GGUF takes ~15 s; the converted copy loads in about a second)."""
    from lib import models

    out = ROOT / ".cache" / "smollm2-135m-hf"
    if (out / "model.safetensors").is_file():
        return out
    source = models.resolve_model(models.SMOLLM2_ALIAS)
    model = models.load_model(source, torch.float32, torch.device("cpu"), None)
    tokenizer = models.load_tokenizer(source, None)
    tmp = out.with_name(out.name + ".partial")
    models.save_model(model, tokenizer, str(tmp))
    tmp.rename(out)
    return out
