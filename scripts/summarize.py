#!/usr/bin/env python
"""Comparison table of every results_*.json under the given directories: printed, and with
--out written as summary.csv, summary.md and ppl_vs_sparsity.png.

  python scripts/summarize.py out/smollm2-135m_selectivity --out out/smollm2-135m_selectivity
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lib.pruning.methods import BASELINE  # noqa: E402
from lib.sweeps import summary  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("roots", nargs="+", help="directories searched for results_*.json")
    p.add_argument("--out", default=None, help="write summary.csv/.md and the plot here")
    p.add_argument("--baseline", default=BASELINE)
    p.add_argument("--markdown", action="store_true", help="print markdown instead of text")
    p.add_argument("--strict", action="store_true",
                   help="exit 1 when a results file had to be left out as unreadable")
    args = p.parse_args()
    left_out: list[Path] = []
    rows = summary.load_results(args.roots, left_out)
    if not rows:
        print(f"error: no results_*.json under {', '.join(args.roots)}", file=sys.stderr)
        return 2
    if args.out:
        summary.write_summary(args.roots, args.out, args.baseline)
    table = summary.comparison(rows, args.baseline)
    print(summary.to_markdown(table, args.baseline) if args.markdown
          else summary.to_text(table, args.baseline, len(left_out)))
    return 1 if args.strict and left_out else 0


if __name__ == "__main__":
    sys.exit(main())
