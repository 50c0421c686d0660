#!/usr/bin/env python
"""Print a markdown table of every results_*.json under the given directories.

  python scripts/summarize.py out/reference
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

COLUMNS = ("method", "sparsity_type", "sparsity_ratio", "actual_sparsity", "ppl_test",
           "prune_seconds", "peak_memory_MiB", "nsamples", "seqlen", "eval_windows_used")


def load_rows(roots: list[str]) -> list[dict]:
    rows = []
    for root in roots:
        for path in sorted(Path(root).rglob("results_*.json")):
            record = json.loads(path.read_text())
            record["peak_memory_MiB"] = round(record.get("peak_memory_bytes", 0) / 2**20)
            record["path"] = str(path)
            rows.append(record)
    order = {"unstructured": 0}
    return sorted(rows, key=lambda r: (order.get(r.get("sparsity_type"), 1),
                                       r.get("sparsity_type"), r.get("sparsity_ratio"),
                                       r.get("ppl_test") or float("inf")))


def cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e5 else f"{value:.3e}"
    return "" if value is None else str(value)


def markdown(rows: list[dict]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + " --- |" * len(COLUMNS)]
    lines += ["| " + " | ".join(cell(r.get(c)) for c in COLUMNS) + " |" for r in rows]
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("roots", nargs="+", help="directories searched for results_*.json")
    args = p.parse_args()
    rows = load_rows(args.roots)
    if not rows:
        print(f"error: no results_*.json under {', '.join(args.roots)}", file=sys.stderr)
        return 2
    print(markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
