"""The reference rows of a study tree (dense, magnitude, wanda, sparsegpt at 50% unstructured and
2:4) as a Markdown table: perplexity as mean ± sd over the calibration seeds run, prune seconds
as their range, peak memory (pruning) as the largest, each with the number of seeds; prune
seconds measured alone from the benchmark files in alone/ (bench_<pattern>.json, one process
per pattern, nothing else on the machine); then, once it is done, the full-test row (full_test/:
the pruning run's record, and the record of the evaluation that finished it).

  python docs/results/qwen_study/reference.py [TREE]   (default: this folder's Qwen tree;
  alone/ and full_test/ are always this folder's)
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2]))
from lib.sweeps import summary  # noqa: E402

METHODS = ("magnitude", "wanda", "sparsegpt")
PATTERNS = (("unstructured", 0.5), ("2:4", 0.5))


# the budget of the study's rows: a benchmark on another budget is not their alone column
BUDGET = {"model": "qwen2.5-coder-1.5b", "nsamples": 16, "seqlen": 512}


def alone_seconds(folder: Path) -> dict[tuple[str, str], float]:
    """(method, sparsity type) -> best prune seconds of the benchmark run alone."""
    found = {}
    for path in sorted(folder.glob("bench_*.json")):
        bench = json.loads(path.read_text())
        if any(bench.get(k) != v for k, v in BUDGET.items()):
            raise SystemExit(f"{path}: not the study's budget {BUDGET}; rerun alone/run.sh")
        for name, run in bench["runs"].items():
            found[(name, bench["sparsity_type"])] = run["best_seconds"]
    return found


def row(name: str, sparsity: str, runs: list[dict], alone: float | None = None) -> str:
    ppl = [r["ppl_test"] for r in runs]
    mean, sd = summary.mean_sd(ppl)
    ppl_cell = f"{mean:.2f}" if sd is None else f"{mean:.2f} ± {sd:.2f}"
    seconds = sorted(r.get("prune_seconds") or 0.0 for r in runs)
    secs = f"{seconds[0]:.0f}" if len(seconds) == 1 else f"{seconds[0]:.0f}-{seconds[-1]:.0f}"
    peak = max(r.get("peak_memory_bytes") or 0 for r in runs) / 2**30
    actual = summary.mean_sd([r["actual_sparsity"] for r in runs])[0]
    alone_cell = "-" if alone is None else f"{alone:.0f}"
    if name == "dense":
        secs, peak_cell = "-", "-"
    else:
        peak_cell = f"{peak:.2f} GiB"
    return (f"| {name} | {sparsity} | {actual:.4f} | {ppl_cell} | {len(runs)} | {secs} | "
            f"{alone_cell} | {peak_cell} |")


def full_test_row(folder: Path) -> str | None:
    """The full-test row: pruning from the pruning run's record, perplexity from the finished
    evaluation of the model that run saved (full_test.sh); None until both exist."""
    pruned, evaluated = folder / "results_wanda.json", folder / "results_dense.json"
    if not (pruned.exists() and evaluated.exists()):
        return None
    prune, run = json.loads(pruned.read_text()), json.loads(evaluated.read_text())
    saved = (prune.get("saved_model") or {}).get("path")
    if run.get("status") != "done" or saved is None or run.get("model") != saved:
        return None
    peak = prune.get("peak_memory_bytes")
    peak_cell = "-" if peak is None else f"{peak / 2**30:.2f} GiB"
    return (f"| wanda | {summary.pattern_label(prune['sparsity_type'], prune['sparsity_ratio'])} "
            f"| {prune['actual_sparsity']:.4f} | {prune['nsamples']} x {prune['seqlen']} "
            f"(seed {prune['seed']}) | {run['eval_windows_used']} x {run['seqlen']} "
            f"| {run['ppl_test']:.2f} | {prune['prune_seconds']:.0f} | {peak_cell} |")


def main(tree: Path) -> None:
    rows = summary.load_results([tree])
    alone = alone_seconds(HERE / "alone")
    print("| method | sparsity | actual sparsity | WikiText-2 ppl (mean ± sd) | seeds | "
          "prune seconds (beside a lane) | prune seconds alone | peak memory (pruning) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    dense = [r for r in rows if r["method"] == "dense"]
    if dense:
        print(row("dense", "0", dense))
    for method in METHODS:
        for kind, ratio in PATTERNS:
            runs = [r for r in rows if r["method"] == method and not r.get("run_name")
                    and r["sparsity_type"] == kind and r["sparsity_ratio"] == ratio]
            if runs:
                print(row(method, summary.pattern_label(kind, ratio), runs,
                          alone.get((method, kind))))
    full = full_test_row(HERE / "full_test")
    if full is not None:
        print("\n| method | sparsity | actual sparsity | calibration (C4 windows x tokens) | "
              "evaluation (WikiText-2 test windows x tokens) | ppl | prune seconds | "
              "peak memory (pruning) |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- |")
        print(full)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "qwen2.5-coder-1.5b")
