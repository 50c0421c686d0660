#!/bin/bash
# Does the histogram's token subsample (selectivity_sample, default 4) move perplexity? Each
# selectivity method with every token (selectivity_sample=1) and with its default, 5 calibration
# seeds, SmolLM2-135M at 50% unstructured, the seed study's budget (16 C4 windows x 512 tokens,
# the first 32 WikiText-2 test windows). Two single-thread lanes, one per arm; resumable (rerun
# and the finished runs are skipped). Run from the repository root:
#   bash docs/results/sample_study/run.sh [OUT_ROOT]; then python docs/results/sample_study/tables.py OUT_ROOT
# The 30 runs of 2026-12-01 (results files in smollm2-135m/, table.md) took about 50 min.
set -u
out=${1:-out/evidence/sample_study}
FLAGS="--nsamples 16 --seqlen 512 --eval_windows 32 --data_dir ../shared/data"
export OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1 MKL_NUM_THREADS=1
mkdir -p "$out/smollm2-135m"
every="wanda_idf:selectivity_sample=1,wanda_spiky:selectivity_sample=1,wanda_select:selectivity_sample=1"
for arm in "$every" "wanda_idf,wanda_spiky,wanda_select"; do
  bash scripts/run_selectivity_experiments.sh smollm2-135m 0.5 unstructured --methods "$arm" \
    --seeds 0,1,2,3,4 --out_root "$out/smollm2-135m" -- $FLAGS \
    >> "$out/lane_$([ "$arm" = "$every" ] && echo every || echo default).log" 2>&1 &
done
wait
