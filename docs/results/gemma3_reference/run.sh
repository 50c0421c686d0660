#!/bin/bash
# Gemma 3 270M reference rows (README): dense and magnitude at 50% unstructured and 2:4, at the
# seed study's budget (16 C4 windows x 512 tokens, seed 0; the first 32 WikiText-2 test windows
# of 512), so that they sit beside the seed study's wanda and sparsegpt rows (5 seeds each).
# FULL=1 runs dense, magnitude, wanda and sparsegpt at Wanda's budget instead (128 x 2048, the
# full test split): about 3.5 hours alone on 2 CPU cores, not yet run here (README).
# One run at a time; resumable (finished runs are skipped). Run from the repository root:
#   bash docs/results/gemma3_reference/run.sh [OUT_ROOT]
set -u
model=${MODEL:-gemma3-270m}
out=${1:-out/evidence/$(basename "$model")_reference}
if [ "${FULL:-0}" = 1 ]; then
  FLAGS="--nsamples 128 --seqlen 2048"; methods="magnitude wanda sparsegpt"; out="${out}_full"
else
  FLAGS="--nsamples 16 --seqlen 512 --eval_windows 32"; methods="magnitude"
fi
FLAGS="$FLAGS --data_dir ../shared/data --skip_if_done"
mkdir -p "$out"
run() {  # NAME main.py-flags...
  local name=$1; shift
  .venv/bin/python main.py --model "$model" $FLAGS --save "$out/$name" "$@" > "$out/$name.log" 2>&1
  grep -h "wikitext perplexity" "$out/$name.log" | sed "s/^/$name: /"
}
run dense
for method in $methods; do
  run "${method}_unstructured" --prune_method $method --sparsity_ratio 0.5
  run "${method}_2-4" --prune_method $method --sparsity_type 2:4
done
