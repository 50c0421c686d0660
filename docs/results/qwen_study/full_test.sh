#!/bin/bash
# The full-test wanda 50% row of docs/reference_results.md (issue 31): Qwen2.5-Coder-1.5B pruned
# with wanda at 50% unstructured, calibrated on 16 C4 windows of 2048 tokens (seed 0, as Gemma 3's
# full-test rows), evaluated on the whole WikiText-2 test in windows of 2048 tokens, float32, one
# thread. On one core of the 2-core CPU machine that is about an hour of pruning and several hours
# of evaluation, more than one session, so the run saves the pruned model and a killed evaluation
# resumes at the window it reached (lib/evaluation/progress.py): the first call prunes, saves and
# starts evaluating; every later call evaluates the saved model (--prune_method dense, same --save),
# running only the windows missing. Call it until OUT/results_dense.json (or results_wanda.json)
# reads "status": "done". Run from the repo root:
#   bash docs/results/qwen_study/full_test.sh [OUT]
set -u
out=${1:-out/evidence/qwen_full}
m=qwen2.5-coder-1.5b
COMMON="--seqlen 2048 --data_dir ../shared/data --save $out --skip_if_done"
export OMP_NUM_THREADS=${THREADS:-1} NUMBA_NUM_THREADS=${THREADS:-1} MKL_NUM_THREADS=${THREADS:-1}
mkdir -p "$out"
saved() {  # the pruning run's record names its saved model only once the model is whole on disk
  .venv/bin/python -c 'import json, sys
r = json.load(open(sys.argv[1]))
sys.exit(0 if r.get("saved_model") else 1)' "$out/results_wanda.json" 2> /dev/null
}
if saved; then
  .venv/bin/python main.py --model "$out/model" --prune_method dense $COMMON >> "$out/run.log" 2>&1
else
  .venv/bin/python main.py --model $m --prune_method wanda --sparsity_ratio 0.5 \
    --sparsity_type unstructured --nsamples 16 --seed 0 --save_model "$out/model" $COMMON \
    >> "$out/run.log" 2>&1
fi
