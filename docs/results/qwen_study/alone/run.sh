#!/bin/bash
# Prune seconds of the reference rows measured alone (issue 31): nothing else running on the
# 2-core machine, the default threads (both cores), one process per pattern running the
# forward-pass floor, wanda, magnitude and sparsegpt once each, in that order, on the same 16 C4
# windows of 512 tokens (seed 0), the dense weights restored from disk between runs
# (scripts/benchmark_selectivity.py). reference.py reads the JSON files. Run from the repo root:
#   bash docs/results/qwen_study/alone/run.sh
set -eu
here=docs/results/qwen_study/alone
for t in unstructured 2:4; do
  .venv/bin/python scripts/benchmark_selectivity.py --model qwen2.5-coder-1.5b \
    --data_dir ../shared/data --nsamples 16 --seqlen 512 --sparsity_type "$t" --repeats 1 \
    --methods magnitude,sparsegpt --originals disk --json "$here/bench_${t/:/-}.json" \
    | tee "$here/bench_${t/:/-}.txt"
done
