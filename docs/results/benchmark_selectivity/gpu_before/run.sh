#!/bin/bash
# GPU measurement for issue 20 (CUDA path of the selectivity statistics), SmolLM2-135M shapes with
# random weights (the cost does not depend on the weights' values), real C4/WikiText data.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .devkit/whl/*.whl && export PYTHONPATH=/tmp/site || exit 1
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee $OUT/gpu.txt
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)" | tee -a $OUT/gpu.txt
python3 - <<'PY'
import torch
from transformers import AutoConfig, AutoModelForCausalLM
torch.manual_seed(0)
config = AutoConfig.from_pretrained(".devkit/model")
AutoModelForCausalLM.from_config(config).save_pretrained(".devkit/model")
PY
for b in "16 512" "32 512" "4 2048" "128 2048"; do
  set -- $b
  timeout 120 python3 scripts/benchmark_selectivity.py --model .devkit/model --data_dir .devkit/data \
    --nsamples $1 --seqlen $2 --device cuda --repeats 3 2>&1 | grep -v "%|" > $OUT/bench_${1}x${2}.txt
  tail -8 $OUT/bench_${1}x${2}.txt
done
