#!/bin/bash
# Gemma 3 270M reference rows (README).
# Default: dense and magnitude at the seed study's budget (16 C4 windows x 512 tokens, seed 0; the
# first 32 WikiText-2 test windows of 512), so that they sit beside the seed study's wanda and
# sparsegpt rows (5 seeds each).
# FULL=1: dense, magnitude, wanda and sparsegpt on the full WikiText-2 test (windows of 2048),
# calibrated on 16 C4 windows x 2048 tokens (an eighth of Wanda's 128 x 2048: seven runs at
# Wanda's budget would not fit a session here; see NOTES.md for the wall times).
# Resumable (finished runs are skipped). ONLY="dense wanda_2-4 ..." runs a subset, so that two
# single-thread lanes can share the work:
#   OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 FULL=1 ONLY="dense wanda_unstructured" bash docs/results/gemma3_reference/run.sh
set -u
model=${MODEL:-gemma3-270m}
out=${1:-out/evidence/$(basename "$model")_reference}
if [ "${FULL:-0}" = 1 ]; then
  FLAGS="--nsamples ${NSAMPLES:-16} --seqlen 2048"; methods="magnitude wanda sparsegpt"; out="${out}_full"
else
  FLAGS="--nsamples 16 --seqlen 512 --eval_windows 32"; methods="magnitude"
fi
FLAGS="$FLAGS --data_dir ../shared/data --skip_if_done"
mkdir -p "$out"
run() {  # NAME main.py-flags...
  local name=$1; shift
  if [ -n "${ONLY:-}" ] && [[ " $ONLY " != *" $name "* ]]; then return; fi
  .venv/bin/python main.py --model "$model" $FLAGS --save "$out/$name" "$@" > "$out/$name.log" 2>&1
  grep -h "wikitext perplexity" "$out/$name.log" | sed "s/^/$name: /"
}
run dense
for method in $methods; do
  run "${method}_unstructured" --prune_method $method --sparsity_ratio 0.5
  run "${method}_2-4" --prune_method $method --sparsity_type 2:4
done
