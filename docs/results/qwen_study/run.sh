#!/bin/bash
# Qwen2.5-Coder-1.5B study (issue 31): the pre-registered pair first (wanda and
# wanda_idf:idf_power=0.25 at 50% unstructured, seeds 0-4, seed by seed), then the dense row and
# magnitude's reference rows, then 2:4, 50% and 70% entries on seeds 0-2. Budget as for the other
# two models, float32 on the CPU:
# calibration 16 C4 windows x 512 tokens (seed = calibration sample), evaluation on the first 32
# WikiText-2 test windows of 512 tokens. One queue of (level, type, entries, seed) tasks in
# priority order, drained by two single-thread lanes. Resumable: rerun and finished runs are
# skipped (main.py --skip_if_done through the sweep). Run from the repo root:
#   bash docs/results/qwen_study/run.sh [OUT_ROOT]
# LANES=1 runs one lane (e.g. beside a benchmark); JOIN=1 adds lanes to a running study's queue
# instead of rebuilding it; TASKS=FILE drains FILE's tasks (lines LEVEL TYPE ENTRIES SEED) instead
# of the study's (the follow-up checks beside this folder do).
set -u
out=${1:-out/evidence/qwen}
m=qwen2.5-coder-1.5b
PAIR="wanda,wanda_idf:idf_power=0.25"
U50="sparsegpt,wanda_spiky,wanda_select,wanda:layer_sparsity=owl,ria"
NM="wanda,wanda_idf:idf_power=0.25,sparsegpt,wanda_spiky,wanda_select,ria"
U70="wanda,sparsegpt,wanda:layer_sparsity=owl"
COMMON="--nsamples 16 --seqlen 512 --data_dir ../shared/data --eval_windows 32"
export OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1 MKL_NUM_THREADS=1
mkdir -p "$out"
queue="$out/queue.txt"
suffix=""  # joined lanes are logged as 1j, 2j, ...
if [ "${JOIN:-0}" = 1 ]; then
  suffix=j
  task() { :; }
elif [ -n "${TASKS:-}" ]; then
  cp "$TASKS" "$queue"
  task() { :; }
else
  : > "$queue"
  task() { echo "$*" >> "$queue"; }  # LEVEL TYPE ENTRIES SEED
fi
for s in 0 1 2 3 4; do
  task 0.5 unstructured wanda $s
  task 0.5 unstructured wanda_idf:idf_power=0.25 $s
done
task dense
# the reference rows' magnitude (calibration-free, so one run per pattern)
task 0.5 unstructured magnitude 0
task 0.5 2:4 magnitude 0
for s in 0 1 2; do
  task 0.5 2:4 "$NM" $s
  task 0.5 unstructured "$U50" $s
  task 0.7 unstructured "$U70" $s
done
lane() {
  while true; do
    line=$(flock "$queue.lock" bash -c "head -n1 '$queue'; sed -i 1d '$queue'")
    [ -z "$line" ] && break
    read -r lvl typ entries seed <<< "$line"
    echo "$(date -u +%FT%TZ) lane $1: $line" >> "$out/lanes.log"
    if [ "$lvl" = dense ]; then
      .venv/bin/python main.py --model $m --prune_method dense $COMMON --skip_if_done \
        --save "$out/$m/dense" >> "$out/dense.log" 2>&1
      continue
    fi
    # main.py per entry into a fixed <type>/<level>/<entry>/seed<k> tree (the layout of the
    # first runs), so that resuming never depends on the sweep's folder layout
    for entry in ${entries//,/ }; do
      read -r dir flags <<< "$(.venv/bin/python -c 'import sys; from lib.sweeps.entries import parse_entry
e = parse_entry(sys.argv[1]); print(e.dirname, *e.flags(), *(["--run_name", e.label] if e.options else []))' "$entry")"
      save="$out/$m/${typ/:/-}/$lvl/$dir/seed$seed"
      mkdir -p "$save"
      .venv/bin/python main.py --model $m $flags --sparsity_ratio "$lvl" --sparsity_type "$typ" \
        --seed "$seed" --save "$save" --skip_if_done $COMMON >> "$save/run.log" 2>&1
      rc=$?  # 3: main.py skipped a finished run
      [ $rc -ne 0 ] && [ $rc -ne 3 ] \
        && echo "$(date -u +%FT%TZ) lane $1: FAILED $entry $lvl $typ seed $seed" >> "$out/lanes.log"
    done
  done
  echo "$(date -u +%FT%TZ) lane $1: queue empty" >> "$out/lanes.log"
}
for k in $(seq "${LANES:-2}"); do lane "$k$suffix" & done
wait
