#!/bin/bash
# Pre-registered check of the wanda_select lead on Qwen2.5-Coder-1.5B (SELECTIVITY.md, "A second
# pre-registered test"): wanda_select vs wanda at 50% unstructured on calibration seeds 3-7, which
# the lead was not found on (the study ran wanda_select on seeds 0-2). Same budget and lanes as
# the study (its run.sh drains this queue). wanda's seeds 3 and 4 are the study's committed runs,
# copied in, so only wanda 5-7 and wanda_select 3-7 run. Resumable. From the repo root:
#   bash docs/results/qwen_select_check/run.sh [OUT_ROOT]
set -eu
out=${1:-out/evidence/qwen_select}
study=docs/results/qwen_study/qwen2.5-coder-1.5b/unstructured/0.5/wanda
dest="$out/qwen2.5-coder-1.5b/unstructured/0.5/wanda"
mkdir -p "$out"
for s in 3 4; do
  if [ ! -f "$dest/seed$s/results_wanda.json" ]; then
    mkdir -p "$dest/seed$s" && cp "$study/seed$s/results_wanda.json" "$dest/seed$s/"
  fi
done
tasks="$out/tasks.txt"
: > "$tasks"
for s in 3 4 5 6 7; do
  echo "0.5 unstructured wanda_select $s" >> "$tasks"
  if [ "$s" -ge 5 ]; then echo "0.5 unstructured wanda $s" >> "$tasks"; fi
done
TASKS="$tasks" bash docs/results/qwen_study/run.sh "$out"
