#!/usr/bin/env bash
# Issue 20's final measurement: the accuracy check at both sample settings, then the benchmark
# at the three budgets (best of 6 / 4 / 4, with paired ratios), alone on the machine.
set -euo pipefail
cd "$(dirname "$0")/../../../.."
out=docs/results/benchmark_selectivity/cpu_2026-12-02c
# (the accuracy files are the ones SELECTIVITY.md cites, one folder up)
.venv/bin/python scripts/check_stats_accuracy.py --data_dir ../shared/data \
    --selectivity_sample 1 > "$out/../accuracy_8x512.txt"
.venv/bin/python scripts/check_stats_accuracy.py --data_dir ../shared/data \
    --selectivity_sample 4 > "$out/../accuracy_8x512_sample4.txt"
for budget in 16x512:6 4x2048:4 32x512:4; do
    size=${budget%:*}
    .venv/bin/python scripts/benchmark_selectivity.py --data_dir ../shared/data \
        --nsamples "${size%x*}" --seqlen "${size#*x}" --repeats "${budget#*:}" > "$out/bench_$size.txt"
done
