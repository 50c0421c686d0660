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


def tiny_decoder_config(family: str, vocab_size: int, **overrides):
    """A 2-block LLaMA-like decoder of `family` (qwen2: biases on q/k/v; qwen3: RMS norms on
    queries and keys; mistral), grouped-query attention, tied embeddings as in Qwen2.5."""
    from transformers import AutoConfig

    settings = dict(vocab_size=vocab_size, hidden_size=64, intermediate_size=128,
                    num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                    head_dim=16, max_position_embeddings=256, tie_word_embeddings=True)
    settings.update(overrides)
    return AutoConfig.for_model(family, **settings)


# Four blocks alternating sliding-window and global attention, the window (16 tokens) shorter
# than the tests' windows, so replaying a block with another block's mask shows.
GEMMA_LAYER_TYPES = ["sliding_attention", "full_attention"] * 2


def tiny_gemma2_config(vocab_size: int):
    from transformers import Gemma2Config

    return Gemma2Config(vocab_size=vocab_size, hidden_size=64, intermediate_size=128,
                        num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
                        head_dim=16, max_position_embeddings=256, sliding_window=16,
                        layer_types=GEMMA_LAYER_TYPES, query_pre_attn_scalar=16)


def tiny_gemma3_config(vocab_size: int):
    """Like Gemma 3: local layers with rotary base 10k, global ones with 1M."""
    from transformers import Gemma3TextConfig

    return Gemma3TextConfig(
        vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=4,
        num_attention_heads=4, num_key_value_heads=1, head_dim=16, max_position_embeddings=256,
        sliding_window=16, layer_types=GEMMA_LAYER_TYPES, query_pre_attn_scalar=16,
        rope_parameters={"sliding_attention": {"rope_type": "default", "rope_theta": 10_000.0},
                         "full_attention": {"rope_type": "default", "rope_theta": 1_000_000.0}})


def save_tiny_model(config, tokenizer, out_dir: Path, seed: int = 0) -> Path:
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def embedded_hf_dir(alias: str) -> Path:
    """An embedded real model as a plain HF directory: the converted copy the alias loads from
    (written once; dequantizing the GGUF takes 15-30 s, the copy loads in about a second)."""
    from lib.io import models, sources

    return models.ensure_converted(sources.resolve_model(alias))


def option_settings(**overrides):
    """Every declared method option at its global default (floor 0: the faithful formulas),
    with overrides."""
    from lib.pruning.methods import all_options
    from lib.run.options import Settings

    values = Settings({o.name: o.default for o in all_options()})
    values.update(overrides)
    return values


# DeepSeek-V2/V3: every block MoE, one routing group, small MLA projections with one key/value
# head per query head, the rotary part as wide as head_dim (which sizes the rotary table)
_MLA = dict(first_k_dense_replace=0, n_group=1, topk_group=1,
            num_key_value_heads=4, q_lora_rank=16, kv_lora_rank=16, qk_rope_head_dim=16,
            qk_nope_head_dim=16, v_head_dim=16)
FAMILY_SETTINGS = {"deepseek_v2": _MLA, "deepseek_v3": _MLA}


def tiny_moe_config(family: str, vocab_size: int, experts: int = 4, top_k: int = 2, **overrides):
    """A 2-block mixture-of-experts model of `family` (qwen3_moe, mixtral, qwen2_moe, gpt_oss,
    ...) in transformers 5's fused-experts layout: `experts` experts, `top_k` per token."""
    from transformers import AutoConfig

    settings = dict(vocab_size=vocab_size, hidden_size=64, intermediate_size=64,
                    moe_intermediate_size=32, shared_expert_intermediate_size=32,
                    num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                    head_dim=16, max_position_embeddings=256, num_experts=experts,
                    num_local_experts=experts, n_routed_experts=experts, num_experts_per_tok=top_k,
                    tie_word_embeddings=False, decoder_sparse_step=1, mlp_only_layers=[])
    settings.update(FAMILY_SETTINGS.get(family, {}))
    settings.update(overrides)
    config = AutoConfig.for_model(family)
    for key, value in settings.items():
        if hasattr(config, key):
            setattr(config, key, value)
    return config


def spread_experts(model, seed: int = 0) -> None:
    """Expert weights with spread across experts and input columns (scaled rows and columns), so
    that per-expert statistics and masks differ from expert to expert."""
    from lib.arch.experts import fused_names, is_fused_experts

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if is_fused_experts(module):
                for name in fused_names(module):
                    param = getattr(module, name)
                    scale = torch.rand(param.shape[0], 1, param.shape[2], generator=gen) * 3
                    param.mul_(0.5 + scale)
