#!/usr/bin/env python
"""Cost of gathering per-expert statistics on a mixture-of-experts model, side by side.

A random MoE model built from a config (default: Qwen3-MoE layout, 8 experts, top-2) and random
token windows; in one process, in alternating order, repeated:
  forward = the model's own forward over the windows, one at a time (its default experts
            implementation);
  stats   = capture the first block's inputs, then every block's statistics pass (Wanda's norm
            hooks on the Linears, each expert fed its routed tokens by lib/arch/experts.py's tap),
            its outputs feeding the next block, as in OWL's dense pass and the first of a
            pruning run's two passes per block;
  all     = the same with --moe_calibration all (every token through every expert).
Prints the best time of each and each one's ratio to the same repeat's forward (median, range).

  python scripts/benchmark_moe.py --experts 8 --top_k 2 --repeats 5
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from tiny_models import tiny_moe_config  # noqa: E402

from lib.pruning.replay import BlockWalk  # noqa: E402
from lib.stats.layerwrapper import WrappedGPT  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--family", default="qwen3_moe")
    p.add_argument("--experts", type=int, default=8)
    p.add_argument("--top_k", type=int, default=2)
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--expert_width", type=int, default=768)
    p.add_argument("--blocks", type=int, default=4)
    p.add_argument("--nsamples", type=int, default=8)
    p.add_argument("--seqlen", type=int, default=512)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from transformers import AutoModelForCausalLM

    config = tiny_moe_config(args.family, 1024, experts=args.experts, top_k=args.top_k,
                             hidden_size=args.hidden, moe_intermediate_size=args.expert_width,
                             intermediate_size=args.expert_width, num_hidden_layers=args.blocks,
                             num_attention_heads=8, num_key_value_heads=4,
                             head_dim=args.hidden // 8, max_position_embeddings=args.seqlen)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config).eval()
    gen = torch.Generator().manual_seed(0)
    samples = [torch.randint(0, 1024, (1, args.seqlen), generator=gen)
               for _ in range(args.nsamples)]

    @torch.no_grad()
    def forward():
        for ids in samples:
            model(ids, use_cache=False)

    def stats(mode):
        def run():
            for _ in BlockWalk(model, samples, WrappedGPT, replay=False, desc="stats",
                               moe_calibration=mode):
                pass
        return run

    runs = {"forward": forward, "stats": stats("routed"), "all": stats("all")}
    times: dict[str, list[float]] = {name: [] for name in runs}
    forward()  # warm-up
    for r in range(args.repeats):
        order = list(runs)[r % len(runs):] + list(runs)[:r % len(runs)]
        for name in order:
            start = time.perf_counter()
            runs[name]()
            times[name].append(time.perf_counter() - start)
    print(f"{args.family}: {args.experts} experts, top-{args.top_k}, hidden {args.hidden}, "
          f"expert width {args.expert_width}, {args.blocks} blocks, {args.nsamples} x "
          f"{args.seqlen} tokens, {torch.get_num_threads()} threads, "
          f"experts implementation {config._experts_implementation}")
    for name, values in times.items():
        ratios = [v / f for v, f in zip(values, times["forward"])]
        print(f"{name:8s} best {min(values):7.3f} s   vs forward: median "
              f"{statistics.median(ratios):.3f} (range {min(ratios):.3f}-{max(ratios):.3f})")


if __name__ == "__main__":
    main()
