#!/usr/bin/env python
"""Proof of scale for --offload: random-weight checkpoints with real LLaMA shapes, pruned with
wanda at a small budget, peak memory compared across depths and with the checkpoint's size.

  python scripts/offload_scale.py make --shape llama2-7b --blocks 8 --out DIR
  python scripts/offload_scale.py run DIR [--offload] [--save RESULTS_DIR]

`make` writes a checkpoint (bf16 safetensors shards, random weights ~ N(0, 0.02), the SmolLM2
tokenizer so the shared data can feed it: vocabulary 49152 instead of LLaMA's 32000); `run`
prunes it with main.py (wanda, 50%, 4 C4 windows x 128 tokens, 2 evaluation windows, bf16 on
the CPU) and prints prune seconds and peak memory. Random weights prove memory and the
streaming, not quality: the perplexity is meaningless.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SHAPES = {  # the published configurations' block shapes
    "llama2-7b": dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                      num_attention_heads=32, num_key_value_heads=32),
    "llama2-13b": dict(hidden_size=5120, intermediate_size=13824, num_hidden_layers=40,
                       num_attention_heads=40, num_key_value_heads=40),
}
BUDGET = ["--prune_method", "wanda", "--sparsity_ratio", "0.5", "--nsamples", "4", "--seqlen",
          "128", "--eval_windows", "2", "--dtype", "bfloat16", "--data_dir",
          str(ROOT.parent / "shared" / "data")]


def make(shape: str, blocks: int | None, out: Path) -> None:
    """Write the checkpoint block by block, so making it needs one block of memory too."""
    from transformers import LlamaConfig

    from lib.io import models, sources
    from lib.io.safetensors_io import ShardWriter

    tokenizer = models.load_tokenizer(sources.resolve_model("smollm2-135m"), None)
    settings = dict(SHAPES[shape])
    if blocks is not None:
        settings["num_hidden_layers"] = blocks
    config = LlamaConfig(vocab_size=len(tokenizer), max_position_embeddings=4096,
                         rms_norm_eps=1e-5, tie_word_embeddings=False, dtype="bfloat16",
                         **settings)
    gen = torch.Generator().manual_seed(0)
    writer = ShardWriter(out)
    hidden, inter = config.hidden_size, config.intermediate_size
    block_shapes = {"self_attn.q_proj.weight": (hidden, hidden),
                    "self_attn.k_proj.weight": (hidden, hidden),
                    "self_attn.v_proj.weight": (hidden, hidden),
                    "self_attn.o_proj.weight": (hidden, hidden),
                    "mlp.gate_proj.weight": (inter, hidden), "mlp.up_proj.weight": (inter, hidden),
                    "mlp.down_proj.weight": (hidden, inter)}
    start = time.perf_counter()
    for b in range(config.num_hidden_layers):
        for name, size in block_shapes.items():
            writer.add(f"model.layers.{b}.{name}",
                       (torch.randn(size, generator=gen) * 0.02).to(torch.bfloat16))
        for norm in ("input_layernorm", "post_attention_layernorm"):
            writer.add(f"model.layers.{b}.{norm}.weight", torch.ones(hidden, dtype=torch.bfloat16))
        print(f"block {b + 1}/{config.num_hidden_layers} ({time.perf_counter() - start:.0f} s)",
              flush=True)
    vocab = config.vocab_size
    writer.add("model.embed_tokens.weight",
               (torch.randn(vocab, hidden, generator=gen) * 0.02).to(torch.bfloat16))
    writer.add("lm_head.weight",
               (torch.randn(vocab, hidden, generator=gen) * 0.02).to(torch.bfloat16))
    writer.add("model.norm.weight", torch.ones(hidden, dtype=torch.bfloat16))
    writer.finish()
    config.save_pretrained(out)
    tokenizer.save_pretrained(out)
    size = sum(f.stat().st_size for f in out.glob("*.safetensors"))
    print(f"wrote {out}: {config.num_hidden_layers} blocks, {size / 2**30:.2f} GiB")


def run(folder: Path, offload: bool, save: Path) -> dict:
    import main

    argv = ["--model", str(folder), *BUDGET, "--save", str(save), "--overwrite"]
    if offload:
        argv.append("--offload")
    if main.main(argv) != 0:
        raise SystemExit(f"the run on {folder} failed")
    record = json.loads((save / "results_wanda.json").read_text())
    size = sum(f.stat().st_size for f in folder.glob("*.safetensors"))
    summary = {"checkpoint": folder.name, "offload": offload,
               "blocks": len(record["sparsity_per_layer"]),
               "checkpoint_gib": round(size / 2**30, 2),
               "prune_seconds": record["prune_seconds"],
               "peak_memory_gib": round(record["peak_memory_bytes"] / 2**30, 3),
               "actual_sparsity": record["actual_sparsity"]}
    print(json.dumps(summary))
    return summary


def main_cli() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    mk = sub.add_parser("make")
    mk.add_argument("--shape", choices=list(SHAPES), default="llama2-7b")
    mk.add_argument("--blocks", type=int, default=None, help="cut to this many blocks")
    mk.add_argument("--out", type=Path, required=True)
    rn = sub.add_parser("run")
    rn.add_argument("folder", type=Path)
    rn.add_argument("--offload", action="store_true")
    rn.add_argument("--save", type=Path, default=None)
    args = p.parse_args()
    if args.command == "make":
        make(args.shape, args.blocks, args.out)
    else:
        save = args.save or ROOT / "out" / "offload_scale" / (
            args.folder.name + ("_offload" if args.offload else "_memory"))
        run(args.folder, args.offload, save)
    return 0


if __name__ == "__main__":
    sys.exit(main_cli())
