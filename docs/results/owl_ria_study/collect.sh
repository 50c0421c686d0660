#!/bin/bash
# After run.sh: copy each model's results JSONs here, write the summaries (one per sparsity level
# and pattern, one over all of them with the perplexity-against-sparsity plot), the compact tables
# (against wanda; the OWL entries against OWL-wanda; each score with OWL against itself uniform)
# and the OWL report (dense-pass cost, block ratios). Run from the repository root:
#   bash docs/results/owl_ria_study/collect.sh [OUT_ROOT]
set -eu
out=${1:-out/evidence/owl_ria}
here=docs/results/owl_ria_study
py=${PYTHON:-.venv/bin/python}
for m in smollm2-135m gemma3-270m; do
  rm -rf "${here:?}/$m" && mkdir -p "$here/$m"
  bash docs/results/copy_finished_results.sh "$out/$m" "$here/$m"
  "$py" - "$here/$m" <<'PY'
import sys
from pathlib import Path
from lib.sweeps import summary
root = Path(sys.argv[1])
runs = [p for p in root.rglob("results_*.json") if len(p.relative_to(root).parts) == 5]
for group in sorted({p.parent.parent.parent for p in runs}):  # <type>/<level>/<entry>/seed<k>/
    summary.write_summary([group], group)
summary.write_summary([root], root)
PY
done
"$py" "$here/tables.py" "$here" > "$here/tables.md"
"$py" "$here/tables.py" "$here" "wanda:layer_sparsity=owl" owl > "$here/tables_vs_owl_wanda.md"
"$py" "$here/tables.py" "$here" --owl_effect > "$here/owl_effect.md"
"$py" "$here/owl_report.py" "$here" | tee "$here/owl_report.txt"
