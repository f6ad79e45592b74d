#!/usr/bin/env bash
# GPT-2 124M on one H100/H200: bf16 autocast, torch.compile, tokens/s and MFU over 50 steps after 10 warm-up
# steps (goal: MFU >= 40 %). Runs the same launcher and trainer as every CPU run (torchrun -> model.pretrain).
#   benchmarks/gpu_check.sh [--shared DIR] [--micro-batch 16] [--grad-accum 4]
# PYTHON selects the interpreter (one with a CUDA build of torch); default .venv/bin/python, else python3.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
[ -x "$PY" ] || PY=python3
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
"$PY" -c "import torch; assert torch.cuda.is_available(), 'this torch build sees no CUDA device'; print('torch', torch.__version__)"
exec "$PY" -m benchmarks.train gpu --steps 50 --warmup 10 "$@"
