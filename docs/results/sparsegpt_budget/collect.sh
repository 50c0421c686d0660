#!/bin/bash
# After run.sh: copy the finished results here and write summary.md (one table per calibration
# budget: each table pairs sparsegpt with wanda on the same seeds). From the repo root:
#   bash docs/results/sparsegpt_budget/collect.sh [OUT_ROOT]
set -eu
out=${1:-out/evidence/sparsegpt_budget}
here=docs/results/sparsegpt_budget
py=${PYTHON:-.venv/bin/python}
rm -rf "${here:?}/runs" && mkdir -p "$here/runs"
bash docs/results/copy_finished_results.sh "$out" "$here/runs"
"$py" - "$here" <<'PY'
import sys
from pathlib import Path
from lib.sweeps import summary
here = Path(sys.argv[1])
summary.write_summary([here / "runs"], here, plot=False)
print((here / "summary.md").read_text())
PY
