#!/bin/bash
# One small sweep (SmolLM2, wanda and magnitude, seeds 0-1: four runs at 2 C4 windows x 128
# tokens, 2 evaluation windows) three ways on this machine, nothing else running: in turn,
# --jobs 2 (local processes), --backend ray --jobs 2. Prints each way's wall time and, per run,
# its threads and seconds. Run from the repo root:  bash docs/results/ray_vs_turn/run.sh [OUT]
set -eu
out=${1:-/tmp/ray_vs_turn}
rm -rf "$out"
flags=(-- --nsamples 2 --seqlen 128 --eval_windows 2 --data_dir ../shared/data)
for way in turn jobs ray; do
  case $way in
    turn) extra=() ;;
    jobs) extra=(--jobs 2) ;;
    ray) extra=(--backend ray --jobs 2) ;;
  esac
  start=$(date +%s.%N)
  bash scripts/run_selectivity_experiments.sh smollm2-135m 0.5 --methods wanda,magnitude \
    --seeds 0,1 "${extra[@]}" --out_root "$out/$way" "${flags[@]}" > "$out.$way.log" 2>&1
  end=$(date +%s.%N)
  echo "$way: wall $(echo "$end - $start" | bc) s"
  grep "^=== \[" "$out.$way.log" | sed 's/^/  /'
  .venv/bin/python - "$out/$way" <<'PY'
import json, sys
from pathlib import Path
for p in sorted(Path(sys.argv[1]).rglob("results_*.json")):
    r = json.loads(p.read_text())
    print(f"  {r['method']:10s} seed {r['seed']}: threads {r['machine']['torch_threads']}, "
          f"prune {r['prune_seconds']:.1f} s, eval {r['eval_seconds']:.1f} s")
PY
done
ls -d /tmp/ray /tmp/ray-* 2>/dev/null | sed "s/^/left behind: /" || echo "nothing of Ray left in /tmp"
