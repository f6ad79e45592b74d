#!/usr/bin/env bash
# GRPO on GSM8K from an SFT checkpoint on one GPU (GPT-2 124M-sized: nanochat's d20 reference went from 0.0455 to
# 0.0758 pass@1 after RL): held-out pass@1 on GSM8K test before and after, the curves in MLflow, roll-out throughput.
# Runs the same launcher and RL stage as every CPU run (torchrun -> model.rl), bf16 autocast on the GPU.
#   benchmarks/gpu_rl.sh --init CHECKPOINT [--steps 200] [--nproc 1] [--workdir DIR] [--mlflow-uri URI]
#   benchmarks/gpu_rl.sh --smoke          # the same path on the CPU with a tiny random model (a check, not a result)
# The checkpoint is an SFT run folder (or checkpoint folder) of a model with a GPT-2 (or other published) tokenizer;
# its vocabulary files come from ../shared/data/tokenizers. PYTHON selects the interpreter (one with a CUDA build of
# torch); default .venv/bin/python, else python3.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
[ -x "$PY" ] || PY=python3
if [[ " $* " != *" --smoke "* ]]; then
  nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
  "$PY" -c "import torch; assert torch.cuda.is_available(), 'this torch build sees no CUDA device'; print('torch', torch.__version__)"
fi
exec "$PY" -m benchmarks.rl gsm8k "$@"
