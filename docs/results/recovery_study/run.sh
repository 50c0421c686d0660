#!/bin/bash
# Recovery study (issue 32): SmolLM2-135M at 2:4, wanda / sparsegpt / wanda_spiky pruned and then
# recovered with one LoRA budget (100 steps x 4 windows x 256 C4 tokens = 102,400 training tokens,
# lr 2e-4, rank 8, every pruned Linear, adapters trained through the masks and merged), seeds 0-2;
# then one Wanda-protocol row (--recover lora_dense, wanda seed 0). Calibration and evaluation as in
# the seed studies: 16 C4 windows x 512 tokens, the first 32 WikiText-2 test windows of 512 tokens.
# Two single-thread lanes drain one queue; resumable (--skip_if_done, and a recovery cut off
# mid-way resumes from its checkpoint every 25 steps). Run from the repository root:
#   bash docs/results/recovery_study/run.sh [OUT_ROOT]
set -u
out=${1:-out/evidence/recovery}
m=smollm2-135m
COMMON="--nsamples 16 --seqlen 512 --data_dir ../shared/data --eval_windows 32"
RECOVER="--recover_steps 100 --recover_batch 4 --recover_seqlen 256 --recover_lr 2e-4 --recover_every 25"
export OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1 MKL_NUM_THREADS=1
mkdir -p "$out"
queue="$out/queue.txt"
: > "$queue"
for s in 0 1 2; do
  for method in wanda sparsegpt wanda_spiky; do echo "$method lora $s" >> "$queue"; done
done
echo "wanda lora_dense 0" >> "$queue"
lane() {
  while true; do
    line=$(flock "$queue.lock" bash -c "head -n1 '$queue'; sed -i 1d '$queue'")
    [ -z "$line" ] && break
    read -r method mode seed <<< "$line"
    save="$out/$m/2-4/$mode/$method/seed$seed"
    mkdir -p "$save"
    echo "$(date -u +%FT%TZ) lane $1: $line" >> "$out/lanes.log"
    .venv/bin/python main.py --model $m --prune_method "$method" --sparsity_ratio 0.5 \
      --sparsity_type 2:4 --seed "$seed" --recover "$mode" $RECOVER $COMMON \
      --save "$save" --skip_if_done >> "$save/run.log" 2>&1
    rc=$?  # 3: main.py skipped a finished run
    [ $rc -ne 0 ] && [ $rc -ne 3 ] && echo "$(date -u +%FT%TZ) lane $1: FAILED $line" >> "$out/lanes.log"
  done
  echo "$(date -u +%FT%TZ) lane $1: queue empty" >> "$out/lanes.log"
}
lane 1 & lane 2 &
wait
