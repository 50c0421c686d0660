#!/bin/bash
# Issue 31, point 6: the cost of selectivity at 1.5B parameters, as bench_16x512.txt was made
# (one thread, beside one single-thread study lane on the 2-core VM; the dense weights wait on
# disk, as two float32 copies of this model do not fit in 24 GiB). From the repo root:
export OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1 MKL_NUM_THREADS=1
.venv/bin/python scripts/benchmark_selectivity.py --model qwen2.5-coder-1.5b \
  --data_dir ../shared/data --nsamples 16 --seqlen 512 --repeats 2 --methods wanda_select \
  --originals disk
# SmolLM2 beside it, the same way (4 repeats; it ran while a study lane and a SmolLM2 run shared
# the two cores): smollm2_16x512.txt
.venv/bin/python scripts/benchmark_selectivity.py --model smollm2-135m \
  --data_dir ../shared/data --nsamples 16 --seqlen 512 --repeats 4 --methods wanda_select \
  --originals disk
