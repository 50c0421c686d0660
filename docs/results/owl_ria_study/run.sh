#!/bin/bash
# RIA and OWL beside wanda, selectivity and SparseGPT (issue 18), on SmolLM2-135M and Gemma 3 270M:
# 50%, 60% and 70% unstructured on calibration seeds 0-2 (0-4 at 70%), and 2:4 for ria against
# wanda and wanda_spiky on seeds 0-2. Budget as the seed studies: 16 C4 windows x 512 tokens,
# the first 32 WikiText-2 test windows of 512 tokens, float32 on CPU. Two single-thread lanes:
# one per model, the SmolLM2 lane taking Gemma's extra seeds and 2:4 once its own work is done.
# Resumable: rerun and the finished runs are skipped. Run from the repository root:
#   bash docs/results/owl_ria_study/run.sh [OUT_ROOT]
set -u
out=${1:-out/evidence/owl_ria}
E="wanda,wanda:layer_sparsity=owl,ria,ria:layer_sparsity=owl,wanda_spiky"
E="$E,wanda_spiky:layer_sparsity=owl,sparsegpt,sparsegpt:layer_sparsity=owl"
NM="wanda,ria,wanda_spiky"
FLAGS="--nsamples 16 --seqlen 512 --eval_windows 32 --data_dir ../shared/data"
export OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1 MKL_NUM_THREADS=1
mkdir -p "$out"
sweep() {  # MODEL LEVELS TYPE ENTRIES SEEDS
  bash scripts/run_selectivity_experiments.sh "$1" "$2" "$3" --methods "$4" --seeds "$5" \
    --out_root "$out/$1" -- $FLAGS >> "$out/sweep_$1.log" 2>&1
}
( sweep gemma3-270m 0.5,0.6,0.7 unstructured "$E" 0,1,2 ) &
( sweep smollm2-135m 0.5,0.6,0.7 unstructured "$E" 0,1,2
  sweep smollm2-135m 0.7 unstructured "$E" 3,4
  sweep smollm2-135m 0.5 2:4 "$NM" 0,1,2
  sweep gemma3-270m 0.7 unstructured "$E" 3,4
  sweep gemma3-270m 0.5 2:4 "$NM" 0,1,2 ) &
wait
