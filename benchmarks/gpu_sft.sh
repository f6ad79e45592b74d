#!/usr/bin/env bash
# A GPT-2-124M-sized chat model on one GPU, through the same commands a user runs: the corpus built from the
# shared WARCs (Spark), GPT-2 token shards, pretraining (bf16, compiled), SFT on OASST + GSM8K + identity
# conversations (built by the `sft` flow first), then the model interrogated on GSM8K test problems (judge:
# the gsm8k verifier), which gives its accuracy. Prints the SFT run's summary, its last chat samples and the
# GSM8K accuracy; everything is tracked in MLflow (SQLite in the work folder).
#
#   bash benchmarks/gpu_sft.sh                 # on a CUDA machine (PYTHON: an interpreter with CUDA torch)
#   SMOKE=1 bash benchmarks/gpu_sft.sh         # the same chain on CPU with a tiny model and a few steps
#
# Settings (environment): SHARED (../shared/data), WORK (work/gpu_sft), PRETRAIN_STEPS (3000), SFT_STEPS (600),
# GSM8K_QUESTIONS (200).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
[ -x "$PY" ] || PY=python3
FF=("$PY" -m fineforge.flows.cli)
SHARED="$(realpath "${SHARED:-../shared/data}")"
WORK="${WORK:-work/gpu_sft}"
export MLFLOW_TRACKING_URI="sqlite:///$(realpath -m "$WORK")/mlflow.db" MLFLOW_DISABLE_TELEMETRY=true
mkdir -p "$WORK"

if [ "${SMOKE:-0}" = 1 ]; then  # CPU, tiny model: checks the chain, not the numbers
  WARCS="$SHARED/warc/wget-2024-sample-0000.warc.gz"; VAL_FRACTION=0.2
  MODEL=(--model tiny --set 'model_overrides={"block_size": 256}' --set device=cpu --set micro_batch_size=4)
  PRETRAIN_STEPS="${PRETRAIN_STEPS:-20}"; SFT_STEPS="${SFT_STEPS:-10}"; GSM8K_QUESTIONS="${GSM8K_QUESTIONS:-5}"
  CONTEXT=257; SFT_BATCH=(--set micro_batch_size=4); DEVICE=cpu; LIMIT=200
else
  nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
  "$PY" -c "import torch; assert torch.cuda.is_available(), 'this torch build sees no CUDA device'"
  WARCS="$SHARED/warc"; VAL_FRACTION=0.02
  # GPT-2 124M, ~0.5M tokens per step (16 x 1024 x 32 micro-steps), bf16 autocast, compiled
  MODEL=(--model gpt2-124m --set device=cuda --set dtype=bfloat16 --set compile=true --set micro_batch_size=16
         --set tokens_per_step=524288 --set lr=6e-4 --set min_lr=6e-5 --set warmup_steps=200 --set beta2=0.95)
  PRETRAIN_STEPS="${PRETRAIN_STEPS:-3000}"; SFT_STEPS="${SFT_STEPS:-600}"; GSM8K_QUESTIONS="${GSM8K_QUESTIONS:-200}"
  CONTEXT=1025; SFT_BATCH=(--set micro_batch_size=16 --set conversations_per_step=64); DEVICE=cuda; LIMIT=null
fi

# 1. the corpus and its GPT-2 token shards
"${FF[@]}" data build --input "$WARCS" --workdir "$WORK"
"${FF[@]}" tokens build --workdir "$WORK" --name gpt2 --tokenizer gpt2 --vocab-dir "$SHARED/tokenizers" \
  --val-fraction "$VAL_FRACTION"

# 2. pretraining
"${FF[@]}" train pretrain --data "$WORK/tokens/gpt2" --run-dir "$WORK/runs/pretrain" --max-steps "$PRETRAIN_STEPS" \
  --tokenizer-dir "$SHARED/tokenizers" "${MODEL[@]}" --set eval_every=500 --set sample_every=500 \
  --set checkpoint_every=1000 --set experiment=gpu-sft-pretrain

# 3. SFT on OASST + GSM8K + identity, the conversations built by the flow first
cat > "$WORK/conversations.json" <<EOF
{"workdir": "$WORK", "name": "chat", "tokenizer": "gpt2", "vocab_dir": "$SHARED/tokenizers",
 "context_length": $CONTEXT, "too_long": "truncate", "val_fraction": 0.05,
 "sources": [
   {"kind": "oasst", "path": "$SHARED/sft/oasst-en-100-trees.jsonl", "epochs": 2, "limit": $LIMIT},
   {"kind": "gsm8k", "path": "$SHARED/gsm8k/train.jsonl", "calculator": "strip", "limit": $LIMIT},
   {"kind": "identity", "assistant_name": "Forge", "maker": "the fineforge team", "count": 1000}]}
EOF
"${FF[@]}" train sft --init "$WORK/runs/pretrain" --conversations "$WORK/conversations.json" \
  --run-dir "$WORK/runs/sft" --max-steps "$SFT_STEPS" "${SFT_BATCH[@]}" --set "device=$DEVICE" \
  --set lr=3e-5 --set min_lr=3e-6 --set eval_every=100 --set sample_every=200 --set checkpoint_every=200 \
  --set 'sample_prompts=["Who are you?", "What is 12 * 7?", "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. How many clips did Natalia sell altogether in April and May?"]'
echo "--- last chat samples of the SFT run"
cat "$(ls -d "$WORK"/runs/sft/samples/step_* | tail -1)"

# 4. GSM8K test accuracy of the SFT model (one greedy-ish sample per problem, judged by the gsm8k verifier)
head -n "$GSM8K_QUESTIONS" "$SHARED/gsm8k/test.jsonl" > "$WORK/gsm8k_test.jsonl"
"${FF[@]}" interrogate --checkpoint "$WORK/runs/sft" --questions "$WORK/gsm8k_test.jsonl" \
  --output "$WORK/gsm8k_eval" -k 1 --temperature 0.1 --max-new-tokens 256 --judge verifier:gsm8k --device "$DEVICE" \
  --tokenizer-dir "$SHARED/tokenizers"
echo "GSM8K test accuracy (first $GSM8K_QUESTIONS problems): $("$PY" -c "import json,sys; \
s=json.load(open(sys.argv[1])); print(f\"{s['mean_correct_fraction']:.3f}\")" "$WORK/gsm8k_eval/summary.json")"
