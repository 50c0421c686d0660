"""The reference rows of a study tree (dense, magnitude, wanda, sparsegpt at 50% unstructured and
2:4) as a Markdown table: perplexity as mean ± sd over the calibration seeds run, prune seconds
as their range, peak memory (pruning) as the largest, each with the number of seeds.

  python docs/results/qwen_study/reference.py [TREE]   (default: this folder's Qwen tree)
"""
from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2]))
from lib.sweeps import summary  # noqa: E402

METHODS = ("magnitude", "wanda", "sparsegpt")
PATTERNS = (("unstructured", 0.5), ("2:4", 0.5))


def row(name: str, sparsity: str, runs: list[dict]) -> str:
    ppl = [r["ppl_test"] for r in runs]
    mean, sd = summary.mean_sd(ppl)
    ppl_cell = f"{mean:.2f}" if sd is None else f"{mean:.2f} ± {sd:.2f}"
    seconds = sorted(r.get("prune_seconds") or 0.0 for r in runs)
    secs = f"{seconds[0]:.0f}" if len(seconds) == 1 else f"{seconds[0]:.0f}-{seconds[-1]:.0f}"
    peak = max(r.get("peak_memory_bytes") or 0 for r in runs) / 2**30
    actual = summary.mean_sd([r["actual_sparsity"] for r in runs])[0]
    if name == "dense":
        secs, peak_cell = "-", "-"
    else:
        peak_cell = f"{peak:.2f} GiB"
    return (f"| {name} | {sparsity} | {actual:.4f} | {ppl_cell} | {len(runs)} | {secs} | "
            f"{peak_cell} |")


def main(tree: Path) -> None:
    rows = summary.load_results([tree])
    print("| method | sparsity | actual sparsity | WikiText-2 ppl (mean ± sd) | seeds | "
          "prune seconds | peak memory (pruning) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    dense = [r for r in rows if r["method"] == "dense"]
    if dense:
        print(row("dense", "0", dense))
    for method in METHODS:
        for kind, ratio in PATTERNS:
            runs = [r for r in rows if r["method"] == method and not r.get("run_name")
                    and r["sparsity_type"] == kind and r["sparsity_ratio"] == ratio]
            if runs:
                print(row(method, summary.pattern_label(kind, ratio), runs))


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "qwen2.5-coder-1.5b")
