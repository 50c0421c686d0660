#!/bin/bash
# Issue 19's proof of scale: random-weight LLaMA-2 checkpoints (bf16), pruned with --offload at
# 4 C4 windows x 128 tokens, 2 evaluation windows. Writes one JSON line per run to results.jsonl.
#   bash docs/results/offload_scale/run.sh [WORK_DIR]    (from the repository root)
# WORK_DIR holds the checkpoints (3.4 + 13 + 26 GB, deleted as the script goes); the 13B run also
# writes its pruned blocks (26 GB) to a scratch folder it removes.
set -eu
work=${1:-/work/scale}
here=docs/results/offload_scale
py=${PYTHON:-.venv/bin/python}
mkdir -p "$work"
run() { "$py" scripts/offload_scale.py run "$@" 2>"$work/last.log" | tail -1 | tee -a $here/results.jsonl; }
[ -d "$work/llama2-7b-8" ] || "$py" scripts/offload_scale.py make --shape llama2-7b --blocks 8 --out "$work/llama2-7b-8"
[ -d "$work/llama2-7b-32" ] || "$py" scripts/offload_scale.py make --shape llama2-7b --out "$work/llama2-7b-32"
run "$work/llama2-7b-8" --offload
run "$work/llama2-7b-32" --offload
run "$work/llama2-7b-8"
run "$work/llama2-7b-32"
rm -rf "$work/llama2-7b-8" "$work/llama2-7b-32"
[ -d "$work/llama2-13b" ] || "$py" scripts/offload_scale.py make --shape llama2-13b --out "$work/llama2-13b"
run "$work/llama2-13b" --offload
