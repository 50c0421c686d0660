#!/usr/bin/env python
"""Write a small random mixture-of-experts checkpoint (transformers 5 fused experts) with a
byte-level BPE tokenizer trained on WikiText-2's validation text, to try MoE pruning offline.

  python scripts/make_tiny_moe.py OUT [--family qwen3_moe|mixtral|qwen2_moe|...] \
      [--experts 8] [--top_k 2] [--data_dir ../shared/data]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from tiny_models import spread_experts, tiny_moe_config, train_tokenizer  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("out")
    p.add_argument("--family", default="qwen3_moe")
    p.add_argument("--experts", type=int, default=8)
    p.add_argument("--top_k", type=int, default=2)
    p.add_argument("--data_dir", default=str(ROOT.parent / "shared" / "data"))
    args = p.parse_args()
    from transformers import AutoModelForCausalLM

    text = (Path(args.data_dir) / "wikitext-2-raw" / "wiki.valid.raw").read_text("utf-8")
    tokenizer = train_tokenizer(text[:200_000])
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(
        tiny_moe_config(args.family, len(tokenizer), experts=args.experts, top_k=args.top_k))
    spread_experts(model)
    model.save_pretrained(args.out)
    tokenizer.save_pretrained(args.out)
    print(f"wrote a random {args.family} model ({args.experts} experts, top-{args.top_k}) "
          f"to {args.out}")


if __name__ == "__main__":
    main()
