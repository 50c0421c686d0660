#!/bin/bash
# After (or during) run.sh: copy the finished results here and write the check's summary and its
# verdict (verdict.md: wanda_select vs wanda, paired over seeds 3-7, 95% t interval; "confirmed"
# only when the whole interval is below 0). From the repo root:
#   bash docs/results/qwen_select_check/collect.sh [OUT_ROOT]
set -eu
out=${1:-out/evidence/qwen_select}
here=docs/results/qwen_select_check
m=qwen2.5-coder-1.5b
py=${PYTHON:-.venv/bin/python}
rm -rf "${here:?}/$m" && mkdir -p "$here/$m"
bash docs/results/copy_finished_results.sh "$out/$m" "$here/$m"
"$py" -c 'import sys; from lib.sweeps import summary; summary.write_summary([sys.argv[1]], sys.argv[1])' \
  "$here/$m/unstructured/0.5"
"$py" docs/results/paired_verdict.py "$here/$m/unstructured/0.5" wanda_select 5 \
  "Pre-registered check of the wanda_select lead on Qwen2.5-Coder-1.5B, seeds 3-7 (SELECTIVITY.md)" \
  "$here/verdict.md"
