#!/bin/bash
# Gemma 3 270M reference rows (README): dense, magnitude, wanda and sparsegpt at 50% unstructured
# and 2:4; 128 C4 windows of 2048 tokens (seed 0), the full WikiText-2 test split, float32 on
# CPU. One run at a time on all cores, so prune seconds and peak memory are the run's own.
# Resumable (finished runs are skipped). Run from the repository root:
#   bash docs/results/gemma3_reference/run.sh [OUT_ROOT]
set -u
model=${MODEL:-gemma3-270m}
out=${1:-out/evidence/$(basename "$model")_reference}
FLAGS="--nsamples 128 --seqlen 2048 --data_dir ../shared/data --skip_if_done"
mkdir -p "$out"
run() {  # NAME main.py-flags...
  local name=$1; shift
  .venv/bin/python main.py --model "$model" $FLAGS --save "$out/$name" "$@" > "$out/$name.log" 2>&1
  grep -h "wikitext perplexity" "$out/$name.log" | sed "s/^/$name: /"
}
run dense
for method in magnitude wanda sparsegpt; do
  run "${method}_unstructured" --prune_method $method --sparsity_ratio 0.5
  run "${method}_2-4" --prune_method $method --sparsity_type 2:4
done
