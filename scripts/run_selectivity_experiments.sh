#!/usr/bin/env bash
# Prune MODEL with wanda and the three selectivity methods and compare them.
#   scripts/run_selectivity_experiments.sh MODEL [SPARSITY] [TYPE] [--methods a,b] [-- main.py flags]
# e.g. scripts/run_selectivity_experiments.sh smollm2-135m 0.5 2:4 -- --nsamples 32 --seqlen 512 --data_dir ../shared/data
# METHODS="magnitude wanda sparsegpt wanda_select" chooses the methods; see lib/sweeps/sweep.py.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-}"
if [ -z "$python" ]; then
  if [ -x "$here/.venv/bin/python" ]; then python="$here/.venv/bin/python"; else python=python3; fi
fi
cd "$here"
exec "$python" -m lib.sweeps.sweep "$@"
