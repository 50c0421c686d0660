#!/bin/bash
# The seed study behind SELECTIVITY.md's results (issue 8): 9 entries x 5 calibration seeds at
# 50% unstructured and 2:4 on SmolLM2-135M, one single-thread lane per pattern (two 1-thread
# runs side by side give ~15% more throughput than one 2-thread run on a 2-core machine).
# Resumable: rerun and the finished runs are skipped. Run from the repository root:
#   bash docs/results/smollm2_seed_study/run.sh [OUT_ROOT]
set -u
model=${MODEL:-smollm2-135m}  # any --model value; the default is the study above
out=${1:-out/evidence/$(basename "$model")}
M="wanda,wanda_idf:idf_power=0.25,wanda_idf:idf_power=0.5,wanda_idf"
M="$M,wanda_spiky:spiky_power=0.25,wanda_spiky:spiky_power=0.5,wanda_spiky"
M="$M,wanda_select,wanda_select:selectivity_floor=0"
FLAGS="--nsamples 16 --seqlen 512 --eval_windows 32 --data_dir ../shared/data"
export OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1 MKL_NUM_THREADS=1
mkdir -p "$out"
for type in unstructured 2:4; do
  bash scripts/run_selectivity_experiments.sh "$model" 0.5 $type --methods "$M" \
    --seeds 0,1,2,3,4 --out_root "$out" -- $FLAGS > "$out/sweep_${type/:/-}.log" 2>&1 &
done
wait  # each sweep ends by summarizing its pattern and the whole of "$out"
