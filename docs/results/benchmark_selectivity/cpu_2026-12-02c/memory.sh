#!/usr/bin/env bash
# Peak memory once reset_peak_memory hands freed heap pages back before each run (run.sh's
# peaks, measured before that, carry the first runs' high-water mark into every later run):
# the benchmark again at the three budgets, best of 2, then fresh_process.sh as a cross-check.
set -euo pipefail
cd "$(dirname "$0")/../../../.."
out=docs/results/benchmark_selectivity/cpu_2026-12-02c
for size in 16x512 4x2048 32x512; do
    .venv/bin/python scripts/benchmark_selectivity.py --data_dir ../shared/data \
        --nsamples "${size%x*}" --seqlen "${size#*x}" --repeats 2 > "$out/memory_$size.txt"
done
bash "$out/fresh_process.sh" > "$out/fresh_process_32x512.txt"
