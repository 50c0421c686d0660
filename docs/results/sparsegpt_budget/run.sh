#!/bin/bash
# Does SparseGPT lose to wanda when the calibration tokens are fewer than a layer's input
# features (a rank-deficient Hessian)? On Qwen2.5-Coder-1.5B, 16 x 512 = 8,192 tokens are fewer
# than down_proj's 8,960 inputs and sparsegpt was 25% worse than wanda at 50% (seed 0). Here the
# same question on SmolLM2-135M (widest input 1,536): 2 x 512 = 1,024 tokens (below) against
# 16 x 512 (above), wanda and sparsegpt at 50% unstructured, seeds 0-2, the first 32 WikiText-2
# test windows. One single-thread lane; resumable (--skip_if_done). From the repo root:
#   bash docs/results/sparsegpt_budget/run.sh [OUT_ROOT]
set -u
out=${1:-out/evidence/sparsegpt_budget}
export OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1 MKL_NUM_THREADS=1
for seed in 0 1 2; do
  for n in 2 16; do
    for method in wanda sparsegpt; do
      save="$out/nsamples$n/$method/seed$seed"
      mkdir -p "$save"
      .venv/bin/python main.py --model smollm2-135m --prune_method $method --sparsity_ratio 0.5 \
        --sparsity_type unstructured --nsamples $n --seqlen 512 --seed $seed --eval_windows 32 \
        --data_dir ../shared/data --save "$save" --skip_if_done >> "$save/run.log" 2>&1
      rc=$?  # 3: a finished run, skipped
      [ $rc -ne 0 ] && [ $rc -ne 3 ] && echo "FAILED $method n=$n seed $seed" >&2
    done
  done
done
