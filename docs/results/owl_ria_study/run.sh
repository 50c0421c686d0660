#!/bin/bash
# RIA and OWL beside wanda, selectivity and SparseGPT (issue 18), on SmolLM2-135M and Gemma 3 270M:
# 50%, 60% and 70% unstructured on calibration seeds 0-2 (0-4 at 70%), and 2:4 for ria against
# wanda and wanda_spiky on seeds 0-2. Budget, float32 on CPU: calibration 16 C4 windows x 512
# tokens (as the seed studies); evaluation on the first 32 WikiText-2 test windows of 512 tokens
# for SmolLM2 and the first 16 for Gemma 3 (its 262k-entry vocabulary makes evaluation two thirds
# of a run; the windows are the same for every entry, so paired differences keep their meaning).
# One queue of (model, level, entries, seed) tasks in priority order (70% first, then 2:4), drained by two
# single-thread lanes. Resumable: rerun and the finished runs are skipped. Run from the repo root:
#   bash docs/results/owl_ria_study/run.sh [OUT_ROOT]
set -u
out=${1:-out/evidence/owl_ria}
E="wanda,wanda:layer_sparsity=owl,ria,ria:layer_sparsity=owl,wanda_spiky"
E1="$E,wanda_spiky:layer_sparsity=owl"
E2="sparsegpt,sparsegpt:layer_sparsity=owl"
E="$E1,$E2"
NM="wanda,ria,wanda_spiky"
COMMON="--nsamples 16 --seqlen 512 --data_dir ../shared/data"
declare -A WINDOWS=([smollm2-135m]=32 [gemma3-270m]=16)
export OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1 MKL_NUM_THREADS=1
mkdir -p "$out"
queue="$out/queue.txt"
: > "$queue"
task() { echo "$*" >> "$queue"; }  # MODEL LEVEL TYPE ENTRIES SEED
for s in 0 1 2 3 4; do
  for m in smollm2-135m gemma3-270m; do task $m 0.7 unstructured "$E" $s; done
done
for s in 0 1 2; do
  for m in smollm2-135m gemma3-270m; do task $m 0.5 2:4 "$NM" $s; done
done
# 60% and 50%: the score-only entries on every seed before SparseGPT's (twice their cost, and at
# 50% already in the seed studies), so that a short budget loses SparseGPT's 50% seeds first
for s in 0 1 2; do
  for lvl in 0.6 0.5; do
    for m in smollm2-135m gemma3-270m; do task $m $lvl unstructured "$E1" $s; done
  done
done
for lvl in 0.6 0.5; do
  for s in 0 1 2; do
    for m in smollm2-135m gemma3-270m; do task $m $lvl unstructured "$E2" $s; done
  done
done
lane() {
  while true; do
    line=$(flock "$queue.lock" bash -c "head -n1 '$queue'; sed -i 1d '$queue'")
    [ -z "$line" ] && return
    read -r m lvl typ entries seed <<< "$line"
    echo "$(date -u +%FT%TZ) lane $1: $line" >> "$out/lanes.log"
    bash scripts/run_selectivity_experiments.sh "$m" "$lvl" "$typ" --methods "$entries" \
      --seeds "$seed" --out_root "$out/$m" -- $COMMON --eval_windows "${WINDOWS[$m]}" \
      >> "$out/sweep_$m.log" 2>&1
  done
}
lane 1 & lane 2 &
wait
