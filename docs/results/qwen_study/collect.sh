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
"$py" - "$here/$m" <<'PY'
import sys
from pathlib import Path
from lib.sweeps import summary
root = Path(sys.argv[1])
for group in sorted({p.parent.parent.parent for p in root.rglob("seed*/results_*.json")}):
    summary.write_summary([group], group)
PY
"$py" docs/results/paired_verdict.py "$here/$m/unstructured/0.5" wanda_idf:idf_power=0.25 5 \
  "Pre-registered test on Qwen2.5-Coder-1.5B (SELECTIVITY.md)" "$here/verdict.md"
