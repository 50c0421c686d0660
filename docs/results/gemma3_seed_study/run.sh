#!/bin/bash
# The Gemma 3 270M seed study (issue 15): 7 entries x 5 calibration seeds at 50% unstructured and
# 2:4, at the SmolLM2 study's budget (16 C4 windows x 512 tokens; the first 32 WikiText-2 test
# windows of 512 tokens), one single-thread lane per pattern. Resumable: rerun and the finished
# runs are skipped. Run from the repository root:
#   bash docs/results/gemma3_seed_study/run.sh [OUT_ROOT]
set -u
model=${MODEL:-gemma3-270m}
out=${1:-out/evidence/$(basename "$model")}
M="wanda,wanda_spiky,wanda_spiky:spiky_power=0.5,wanda_idf:idf_power=0.25"
M="$M,wanda_select,wanda_select:selectivity_floor=0,sparsegpt"
FLAGS="--nsamples 16 --seqlen 512 --eval_windows 32 --data_dir ../shared/data"
export OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1 MKL_NUM_THREADS=1
mkdir -p "$out"
for type in unstructured 2:4; do
  bash scripts/run_selectivity_experiments.sh "$model" 0.5 $type --methods "$M" \
    --seeds 0,1,2,3,4 --out_root "$out" -- $FLAGS > "$out/sweep_${type/:/-}.log" 2>&1 &
done
wait  # each sweep ends by summarizing its pattern and the whole of "$out"
