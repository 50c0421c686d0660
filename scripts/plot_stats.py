#!/usr/bin/env python
"""Why a selectivity method wins or loses, layer by layer: each input channel's norm against its
activity rate and its spikiness, from a --save_stats file.

  python scripts/plot_stats.py STATS.safetensors OUT.png [--layers NAME,NAME] [--massive 10]

Channels whose norm exceeds --massive times the layer's median ("massive activations") are drawn
in red: with the faithful idf they sit at activity ~1, idf ~0, and lose their whole column.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
from safetensors.torch import load_file  # noqa: E402


def linear_names(stats: dict) -> list[str]:
    return sorted({key.rsplit(".", 1)[0] for key in stats if key.endswith(".norm")},
                  key=lambda n: [int(p) if p.isdigit() else p for p in n.split(".")])


def default_layers(names: list[str]) -> list[str]:
    """The first, middle and last block's q_proj (or first linear) and down_proj (or last)."""
    blocks: dict[str, list[str]] = {}
    for name in names:
        parts = name.split(".")
        index = next((i for i, p in enumerate(parts) if p.isdigit()), None)
        key = ".".join(parts[:index + 1]) if index is not None else ""
        blocks.setdefault(key, []).append(name)
    keys = list(blocks)
    chosen = []
    for key in dict.fromkeys([keys[0], keys[len(keys) // 2], keys[-1]]):
        members = blocks[key]
        first = next((m for m in members if m.endswith("q_proj")), members[0])
        last = next((m for m in members if m.endswith("down_proj")), members[-1])
        chosen += [first] + ([last] if last != first else [])
    return chosen


def plot(stats: dict, layers: list[str], out: Path, massive: float) -> None:
    fig, axes = plt.subplots(2, len(layers), figsize=(3.2 * len(layers), 6.2), dpi=110,
                             squeeze=False)
    for col, name in enumerate(layers):
        norm = stats[f"{name}.norm"]
        big = norm > massive * norm.median()
        for row, (key, label) in enumerate((("active_frac", "activity rate"),
                                            ("spikiness", "spikiness"))):
            ax = axes[row][col]
            values = stats[f"{name}.{key}"]
            ax.scatter(norm[~big], values[~big], s=4, alpha=0.5, label="channels")
            ax.scatter(norm[big], values[big], s=18, color="red",
                       label=f"norm > {massive:g}x median ({int(big.sum())})")
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
            ax.set_xlabel("channel norm ||X_j||")
            if col == 0:
                ax.set_ylabel(label)
            if row == 0:
                ax.set_title(name.replace("model.layers.", "block "), fontsize=8)
                ax.legend(fontsize=6, loc="lower right")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("stats")
    p.add_argument("out")
    p.add_argument("--layers", default=None, help="comma-separated linear names (default: a few)")
    p.add_argument("--massive", type=float, default=10.0)
    args = p.parse_args()
    if not Path(args.stats).is_file():
        print(f"error: {args.stats} not found (write one with main.py --save_stats)",
              file=sys.stderr)
        return 2
    stats = load_file(args.stats)
    names = linear_names(stats)
    if not names:
        print(f"error: {args.stats} holds no <linear>.norm tensors; is it a --save_stats file?",
              file=sys.stderr)
        return 2
    layers = args.layers.split(",") if args.layers else default_layers(names)
    missing = [n for n in layers if n not in names]
    if missing:
        print(f"error: {missing[0]} is not in {args.stats}; e.g. {names[0]}", file=sys.stderr)
        return 2
    plot(stats, layers, Path(args.out), args.massive)
    print(f"wrote {args.out} ({len(layers)} layers)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
