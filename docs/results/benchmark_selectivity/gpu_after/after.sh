python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .devkit/whl/*.whl && export PYTHONPATH=/tmp/site || exit 1
export PYTHONUNBUFFERED=1
python3 -c "
import torch
from transformers import AutoConfig, AutoModelForCausalLM
torch.manual_seed(0)
AutoModelForCausalLM.from_config(AutoConfig.from_pretrained('.devkit/model')).save_pretrained('.devkit/model')" 2>/dev/null
for b in "16 512" "4 2048"; do set -- $b
  timeout 70 python3 scripts/benchmark_selectivity.py --model .devkit/model --data_dir .devkit/data --nsamples $1 --seqlen $2 --device cuda --repeats 2 --methods wanda_select 2>&1 | grep -v "%|" > $OUT/after_${1}x${2}.txt
  tail -6 $OUT/after_${1}x${2}.txt
done
