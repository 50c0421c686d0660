#!/bin/bash
# Gemma 3 270M's massive-activation hazard (issue 15): the per-channel statistics of a wanda_select
# run (4 C4 windows x 256 tokens, --save_stats; scripts/hazard_table.py reads them), and whether
# the faithful idf (selectivity_floor 0; also with idf_offset 1) breaks the model, at the seed
# study's budget (16 C4 windows x 512 tokens, seed 0, the first 32 WikiText-2 test windows of
# 512), so the runs pair with the seed study's seed-0 rows (which hold the faithful wanda_select).
# Resumable. Run from the repository root:
#   bash docs/results/gemma3_hazard/run.sh [OUT_ROOT]
set -u
model=${MODEL:-gemma3-270m}
out=${1:-out/evidence/$(basename "$model")_hazard}
mkdir -p "$out"
python=.venv/bin/python
$python main.py --model "$model" --prune_method wanda_select --sparsity_ratio 0.5 --nsamples 4 \
  --seqlen 256 --eval_windows 2 --data_dir ../shared/data --save "$out/stats" \
  --save_stats "$out/stats/stats.safetensors" --skip_if_done > "$out/stats.log" 2>&1
$python scripts/hazard_table.py "$out/stats/stats.safetensors" > "$out/hazard_table.md"
FLAGS="--nsamples 16 --seqlen 512 --eval_windows 32 --data_dir ../shared/data"
M="wanda_idf:selectivity_floor=0,wanda_idf:idf_offset=1,selectivity_floor=0"
bash scripts/run_selectivity_experiments.sh "$model" 0.5 unstructured --methods "$M" \
  --out_root "$out" -- $FLAGS > "$out/sweep.log" 2>&1
