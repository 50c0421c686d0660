#!/bin/bash
# The full-test wanda 50% row of docs/reference_results.md (issue 31): Qwen2.5-Coder-1.5B pruned
# with wanda at 50% unstructured on the study's calibration (16 C4 windows of 512 tokens, seed 0:
# the model of the study's seed-0 wanda row), saved, then evaluated on the whole WikiText-2 test
# in windows of 2048 tokens, float32, one thread. The evaluation is 2-5 hours on one core beside
# another run (50-120 s a window, by machine), so it is built to span sessions: every finished
# window's value goes to OUT/ppl_windows_<key>.json (lib/evaluation/progress.py) and collect.sh
# copies those files to full_test/; a later call, in a fresh machine, prunes again (the key holds the weights' digest,
# so different weights start over rather than mix) and runs only the windows missing. Call it
# until OUT/results_dense.json reads "status": "done". A new machine can prune to different last
# bits and so to a new key: what was done then, and measured, is in splice/README.md. Run from
# the repo root:
#   bash docs/results/qwen_study/full_test.sh [OUT]
set -u
out=${1:-out/evidence/qwen_full}
m=qwen2.5-coder-1.5b
kept=docs/results/qwen_study/full_test
export OMP_NUM_THREADS=${THREADS:-1} NUMBA_NUM_THREADS=${THREADS:-1} MKL_NUM_THREADS=${THREADS:-1}
mkdir -p "$out"
for f in "$kept"/ppl_windows_*.json; do  # an earlier session's windows
  [ -f "$f" ] && cp -n "$f" "$out/"
done
saved() {  # the pruning run's record names its saved model only once the model is whole on disk
  .venv/bin/python -c 'import json, sys
r = json.load(open(sys.argv[1]))
sys.exit(0 if r.get("saved_model") else 1)' "$out/results_wanda.json" 2> /dev/null
}
if ! saved; then  # one evaluation window: the pruning run's own perplexity is not the row's
  .venv/bin/python main.py --model $m --prune_method wanda --sparsity_ratio 0.5 \
    --sparsity_type unstructured --nsamples 16 --seqlen 512 --seed 0 --eval_windows 1 \
    --data_dir ../shared/data --save "$out" --save_model "$out/model" >> "$out/run.log" 2>&1 \
    || exit 1
fi
.venv/bin/python main.py --model "$out/model" --prune_method dense --seqlen 2048 \
  --data_dir ../shared/data --save "$out" --skip_if_done >> "$out/run.log" 2>&1
