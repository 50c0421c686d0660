#!/bin/bash
# Confirmation on fresh calibration seeds (5-9) of the one lead the seed study left at 2:4:
# wanda_spiky at spiky_power 0.5 (and the default exponent 1) against wanda. Same budget as run.sh,
# two single-thread lanes. Resumable. Run from the repository root:
#   bash docs/results/smollm2_seed_study/confirm.sh [OUT_ROOT]
set -u
model=${MODEL:-smollm2-135m}  # any --model value; the default is the study above
out=${1:-out/evidence/$(basename "$model")_confirm}
M="wanda,wanda_spiky:spiky_power=0.5,wanda_spiky"
FLAGS="--nsamples 16 --seqlen 512 --eval_windows 32 --data_dir ../shared/data"
export OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1 MKL_NUM_THREADS=1
mkdir -p "$out"
for seeds in 5,6,7 8,9; do
  bash scripts/run_selectivity_experiments.sh "$model" 0.5 2:4 --methods "$M" \
    --seeds $seeds --out_root "$out" -- $FLAGS > "$out/sweep_seeds${seeds//,/}.log" 2>&1 &
done
wait
