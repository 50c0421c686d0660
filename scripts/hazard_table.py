#!/usr/bin/env python
"""The massive-activation hazard in numbers, from a --save_stats file: for a few layer inputs,
the three largest-norm channels (their indices, norm / the layer's median norm, activity rate,
idf and spikiness), the median spikiness, and how activity tracks norm across channels.

The three are listed in channel order, not norm order: two of them often have norms within 1-2%
of each other, which another CPU's float kernels can swap (through the mask entries they flip in
earlier blocks), and a swap would move every paired column of the row.

  python scripts/hazard_table.py STATS.safetensors [--layers NAME,NAME]

A channel with norm far above the median and activity near 1 has idf near 0: the faithful idf
(offset 0, no floor) scores its whole column near 0, so pruning removes it.
"""
from __future__ import annotations

import argparse
import sys

import torch
from safetensors.torch import load_file

sys.path.insert(0, __file__.rsplit("/", 2)[0] + "/scripts")
from plot_stats import default_layers, linear_names  # noqa: E402


def row(stats: dict, name: str) -> str:
    norm = stats[f"{name}.norm"].double()
    top = torch.topk(norm, 3).indices.sort().values
    ratio = norm / norm.median()
    fields = {key: stats[f"{name}.{key}"].double() for key in ("active_frac", "idf", "spikiness")}
    corr = torch.corrcoef(torch.stack([fields["active_frac"], norm.clamp_min(1e-30).log()]))[0, 1]

    def three(values: torch.Tensor, fmt: str) -> str:
        return ", ".join(format(float(v), fmt) for v in values[top])
    channels = ", ".join(str(int(i)) for i in top)
    return (f"| {name} | {channels} | {three(ratio, '.1f')} | "
            f"{three(fields['active_frac'], '.2f')} | {three(fields['idf'], '.3f')} | {three(fields['spikiness'], '.1f')} "
            f"({float(fields['spikiness'].median()):.1f}) | {float(corr):.2f} |")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("stats")
    p.add_argument("--layers", default=None, help="comma-separated linear names (default: the "
                   "first, middle and last block's q_proj and down_proj)")
    args = p.parse_args()
    stats = load_file(args.stats)
    names = linear_names(stats)
    layers = args.layers.split(",") if args.layers else default_layers(names)
    print("| layer input | top-3 norm channels | their norm / median | their active_frac | "
          "their idf | "
          "their spikiness (median) | corr(active_frac, log norm) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name in layers:
        print(row(stats, name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
