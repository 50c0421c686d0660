#!/bin/bash
# Copy the results files of a study's finished runs (status "done": a run stopped midway has
# none) from SRC into DEST, keeping their paths under SRC. The study collect.sh scripts use it.
#   bash docs/results/copy_finished_results.sh SRC DEST
set -euo pipefail
src=$1 dest=$2
mkdir -p "$dest"
(cd "$src" && find . -name 'results_*.json' -print0 | xargs -0 grep -lZ '"status": "done"' \
  | xargs -0 tar cf -) | tar xf - -C "$dest"
