#!/bin/bash
# After (or during) run.sh: copy the finished results here and write the summaries, one per
# pattern and level (<type>/<level>/summary.md), and the pre-registered pair's verdict
# (verdict.md: wanda_idf:idf_power=0.25 vs wanda at 50% unstructured, paired over the seeds both
# have, 95% t interval; "confirmed" only when the whole interval is below 0). Run from the repo
# root:  bash docs/results/qwen_study/collect.sh [OUT_ROOT [FULL_TEST_OUT]]
# The full-test row's records and per-window values (full_test.sh; default beside OUT_ROOT) go to
# full_test/, finished or not: reference.py prints the row once an evaluation record is done.
set -eu
out=${1:-out/evidence/qwen}
full=${2:-$(dirname "$out")/qwen_full}
here=docs/results/qwen_study
m=qwen2.5-coder-1.5b
py=${PYTHON:-.venv/bin/python}
rm -rf "${here:?}/$m" && mkdir -p "$here/$m"
bash docs/results/copy_finished_results.sh "$out/$m" "$here/$m"
if [ -f "$full/results_wanda.json" ]; then
  rm -rf "${here:?}/full_test" && mkdir -p "$here/full_test"
  cp "$full"/results_*.json "$full"/ppl_windows_*.json "$here/full_test/" 2> /dev/null || true
fi
"$py" - "$here/$m" "$here/verdict.md" <<'PY'
import sys
from pathlib import Path
from lib.sweeps import summary
root, verdict = Path(sys.argv[1]), Path(sys.argv[2])
for group in sorted({p.parent.parent.parent for p in root.rglob("seed*/results_*.json")}):
    summary.write_summary([group], group)
rows = summary.comparison(summary.load_results([root / "unstructured" / "0.5"]))
pair = next((r for r in rows if r["method"] == "wanda_idf:idf_power=0.25"), None)
base = next((r for r in rows if r["method"] == "wanda"), None)
lines = ["# Pre-registered test on Qwen2.5-Coder-1.5B (SELECTIVITY.md)", ""]
if pair is None or pair["diff_ci_low"] is None:
    lines.append("Not enough paired seeds yet for an interval.")
else:
    hi, lo = pair["diff_ci_high"], pair["diff_ci_low"]
    verdict_text = ("confirmed" if hi < 0 else "contradicted" if lo > 0 else "not confirmed")
    lines += ["| entry | seeds | ppl mean ± sd | paired diff vs wanda [95% CI] | ratio [95% CI] "
              "| lower on | verdict |", "| --- | --- | --- | --- | --- | --- | --- |",
              f"| wanda | {base['seeds']} | {base['ppl_test']:.3f} ± {base['ppl_sd']:.3f} "
              "| | | | |",
              f"| wanda_idf:idf_power=0.25 | {pair['seeds']} | {pair['ppl_test']:.3f} ± "
              f"{pair['ppl_sd']:.3f} | {pair['diff_mean']:+.3f} [{lo:+.3f}, {hi:+.3f}] | "
              f"{pair['ratio']:.4f} [{pair['ratio_ci_low']:.4f}, {pair['ratio_ci_high']:.4f}] "
              f"| {pair['lower_on']} | {verdict_text} |", "",
              f"Pre-registered: 5 seeds. Seeds in this table: {pair['seeds']}"
              + ("" if pair["seeds"] >= 5 else " (the verdict is provisional until all five)."),
              ""]
verdict.write_text("\n".join(lines) + "\n")
print(verdict.read_text())
PY
