#!/usr/bin/env python
"""Bounded-memory selectivity statistics vs the exact definitions, on every layer input of a
real model (each block's q/k/v, o, gate/up and down inputs), on C4 calibration windows.

  python scripts/check_stats_accuracy.py --model smollm2-135m --data_dir ../shared/data \
      --nsamples 8 --seqlen 512
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lib.arch.blocks import decoder_layers  # noqa: E402
from lib.io import (
    data,
    models,
    sources,  # noqa: E402
)
from lib.pruning.prune import find_linears  # noqa: E402
from lib.stats.layerwrapper import (  # noqa: E402
    SELECTIVITY_OPTIONS,
    ExactSelectivityWrappedGPT,
    SelectivityWrappedGPT,
)

SAMPLE = next(o for o in SELECTIVITY_OPTIONS if o.name == "selectivity_sample")


def attach(model, quantile, sample):
    """One (histogram, exact) pair per distinct linear input; returns pairs and hook handles."""
    pairs, handles = {}, []
    for i, block in enumerate(decoder_layers(model)):
        seen = set()
        for name, linear in find_linears(block).items():
            group = name.rsplit(".", 1)[0] + (".down" if "down" in name else
                                              ".o" if "o_proj" in name else "")
            if group in seen:
                continue
            seen.add(group)
            pair = (SelectivityWrappedGPT(linear.in_features, torch.device("cpu"), quantile,
                                          sample),
                    ExactSelectivityWrappedGPT(linear.in_features, torch.device("cpu")))
            pairs[f"{i}.{name}"] = pair

            def feed(module, args, output, pair=pair):
                for stat in pair:
                    stat.add_batch(args[0])
            handles.append(linear.register_forward_hook(feed))
    return pairs, handles


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--data_dir", default=None)
    p.add_argument("--nsamples", type=int, default=8)
    p.add_argument("--seqlen", type=int, default=512)
    p.add_argument("--activity_quantile", type=float, default=0.6)
    p.add_argument("--spike_top_frac", type=float, default=0.1)
    p.add_argument("--selectivity_sample", type=int, default=SAMPLE.default,
                   help=f"{SAMPLE.help} (default {SAMPLE.default}, the CLI's; 1: the histogram "
                        "of every token)")
    args = p.parse_args()
    source = sources.resolve_model(args.model)
    tokenizer = models.load_tokenizer(source, None)
    model = models.load_model(source, torch.float32, torch.device("cpu"), None)
    windows = data.calibration_windows("c4", tokenizer, args.nsamples, 0, args.seqlen,
                                       args.data_dir)
    pairs, handles = attach(model, args.activity_quantile, args.selectivity_sample)
    with torch.no_grad():
        for ids in windows:
            model(ids, use_cache=False)
    for h in handles:
        h.remove()
    worst = {"threshold": (0.0, ""), "active_frac": (0.0, ""), "spikiness": (0.0, "")}
    print(f"{'input':28s} {'tau rel err':>12s} {'active abs err':>15s} {'spiky rel err':>14s}")
    for key, (hist, exact) in pairs.items():
        h = hist.selectivity(args.activity_quantile, args.spike_top_frac)
        e = exact.selectivity(args.activity_quantile, args.spike_top_frac)
        errors = {"threshold": abs(h.threshold - e.threshold) / e.threshold,
                  "active_frac": float((h.active_frac - e.active_frac).abs().max()),
                  "spikiness": float(((h.spikiness - e.spikiness).abs() / e.spikiness).max())}
        print(f"{key:28s} {errors['threshold']:12.2e} {errors['active_frac']:15.2e} "
              f"{errors['spikiness']:14.2e}")
        for name, value in errors.items():
            worst[name] = max(worst[name], (value, key))
    print(f"\n{len(pairs)} layer inputs, {args.nsamples} x {args.seqlen} tokens, "
          f"selectivity_sample={args.selectivity_sample}; worst:")
    for name, (value, key) in worst.items():
        print(f"  {name:12s} {value:.2e}  ({key})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
