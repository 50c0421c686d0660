#!/usr/bin/env bash
# The benchmark at the three budgets of issue 20, best of 4, alone on the machine.
set -euo pipefail
cd "$(dirname "$0")/../../../.."
out=docs/results/benchmark_selectivity/cpu_2026-12-02b
for budget in 16x512 4x2048 32x512; do
    .venv/bin/python scripts/benchmark_selectivity.py --data_dir ../shared/data \
        --nsamples "${budget%x*}" --seqlen "${budget#*x}" --repeats 4 > "$out/bench_$budget.txt"
done
