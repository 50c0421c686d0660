#!/bin/bash
# Fresh seeds for the one lead of the Gemma 3 seed study (issue 15): wanda_idf at idf_power=0.25,
# 50% unstructured, lower than wanda on all of seeds 0-4 (one of twelve comparisons, so it needs
# new data). Same budget as run.sh (16 C4 windows x 512 tokens; the first 32 WikiText-2 test
# windows of 512), seeds 5-9, two runs at a time on one thread each. Resumable. From the repository root:
#   bash docs/results/gemma3_seed_study/confirm.sh [OUT_ROOT]
set -u
out=${1:-out/evidence/gemma3-270m_confirm}
mkdir -p "$out"
bash scripts/run_selectivity_experiments.sh gemma3-270m 0.5 unstructured \
  --methods "wanda,wanda_idf:idf_power=0.25" --seeds 5,6,7,8,9 --jobs 2 --out_root "$out" -- \
  --nsamples 16 --seqlen 512 --eval_windows 32 --data_dir ../shared/data > "$out/sweep.log" 2>&1
