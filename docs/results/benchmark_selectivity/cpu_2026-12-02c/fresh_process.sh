#!/usr/bin/env bash
# Peak memory with nothing held over from an earlier run: wanda and wanda_select at 32 x 512,
# each prune in its own process (main.py, CLI defaults, 50% unstructured, one evaluation window),
# alternating, twice; prints prune_seconds and the prune's peak RSS from each results file.
set -euo pipefail
cd "$(dirname "$0")/../../../.."
tmp=$(mktemp -d)
for r in 0 1; do
    for m in wanda wanda_select; do
        .venv/bin/python main.py --model smollm2-135m --prune_method $m --sparsity_ratio 0.5 \
            --sparsity_type unstructured --nsamples 32 --seqlen 512 --eval_windows 1 \
            --data_dir ../shared/data --save "$tmp/$r" >/dev/null 2>&1
        .venv/bin/python -c "import json,sys; d=json.load(open(sys.argv[1])); print(sys.argv[2], sys.argv[3], d['prune_seconds'], 's', round(d['peak_memory_bytes']/2**20,1), 'MiB')" \
            "$tmp/$r/results_$m.json" $r $m
    done
done
rm -r "$tmp"
