"""Training benchmarks, each through the real launch path (torchrun subprocess running model.pretrain).

    python -m benchmarks.train quality   # nanoGPT's CPU Shakespeare recipe: val loss and time (goal <= 1.88)
    python -m benchmarks.train speed     # training tokens/s with 1 and 2 processes, side by side
    python -m benchmarks.train gpu       # GPT-2 124M, bf16, compiled, one GPU: tokens/s and MFU (gpu_check.sh)

Data: ../shared/data/corpora/tinyshakespeare.txt, bytes tokenizer, split as nanoGPT's prepare.py does
(first 90 % train, last 10 % validation).
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from fineforge.model.shards import load_manifest, write_shard_set
from fineforge.model.tokenizer import load_tokenizer
from fineforge.model.tracking import read_metrics
from fineforge.model.trainer import SUMMARY_FILE
from fineforge.tasks.training.launch import LaunchConfig, run_command, torchrun_command

ROOT = Path(__file__).resolve().parents[1]

log = logging.getLogger("benchmarks.train")

TRAIN_FRACTION = 0.9  # nanoGPT's shakespeare_char split
NANOGPT_VAL_LOSS = 1.88  # nanoGPT README, CPU configuration below, 2,000 iterations

# nanoGPT: train.py config/train_shakespeare_char.py --device=cpu --compile=False --eval_iters=20
# --log_interval=1 --block_size=64 --batch_size=12 --n_layer=4 --n_head=4 --n_embd=128 --max_iters=2000
# --lr_decay_iters=2000 --dropout=0.0 (lr 1e-3, min_lr 1e-4, warmup 100, beta2 0.99, wd 0.1, clip 1.0)
NANOGPT_CPU = {
    "model": "tiny",
    "model_overrides": {"dropout": 0.0},
    "micro_batch_size": 12,
    "max_steps": 2000,
    "lr": 1e-3,
    "min_lr": 1e-4,
    "warmup_steps": 100,
    "decay_steps": 2000,
    "beta2": 0.99,
    "weight_decay": 0.1,
    "grad_clip": 1.0,
    "eval_every": 0,
    "sample_every": 0,
    "checkpoint_every": 0,
    "log_every": 100,
    "use_mlflow": False,
}


def write_shakespeare(text_path: Path, out_dir: Path) -> Path:
    """Bytes-tokenized tinyshakespeare as one train and one val shard with manifest.json."""
    tokenizer = load_tokenizer("bytes")
    tokens = np.asarray(tokenizer.encode(text_path.read_text()), dtype=np.uint32)
    cut = int(len(tokens) * TRAIN_FRACTION)
    write_shard_set(out_dir, [("train", tokens[:cut]), ("val", tokens[cut:])], tokenizer)
    return out_dir


def train(work: Path, name: str, data: Path, nproc: int, threads: int | None = None, **fields) -> tuple[dict, float]:
    """One torchrun run (with `threads` CPU threads per process); returns its summary and wall time in seconds."""
    run_dir = work / name
    config = {"data_dir": str(data), "run_dir": str(run_dir), **fields}
    config_path = work / f"{name}.json"
    config_path.write_text(json.dumps(config, indent=2))
    started = time.perf_counter()
    env = {"OMP_NUM_THREADS": str(threads)} if threads else None
    run_command(torchrun_command("fineforge.model.pretrain", config_path, LaunchConfig(nproc_per_node=nproc)), env=env)
    return json.loads((run_dir / SUMMARY_FILE).read_text()), time.perf_counter() - started


def measured_steps(run_dir: Path, skip: int) -> dict:
    """Tokens/s (total tokens / total step time) and mean MFU over the steps after the first `skip`."""
    steps = [r for r in read_metrics(run_dir) if r["kind"] == "metrics" and "tokens_per_s" in r][skip:]
    seconds = sum(r["step_seconds"] for r in steps)
    tokens = sum(r["tokens_per_s"] * r["step_seconds"] for r in steps)
    mfus = [r["mfu"] for r in steps if "mfu" in r]
    return {"steps": len(steps), "tokens_per_s": tokens / seconds, "mfu": statistics.mean(mfus) if mfus else None}


def quality(work: Path, data: Path, args: argparse.Namespace) -> dict:
    val_tokens = load_manifest(data, verify=False)["tokens"]["val"]
    batch, seq_len = NANOGPT_CPU["micro_batch_size"], 64
    whole_val = (val_tokens - 1) // seq_len // batch  # every sequence of the validation split
    fields = {**NANOGPT_CPU, "max_steps": args.steps, "eval_batches": whole_val}
    summary, seconds = train(work, "quality", data, 1, args.threads, **fields)
    return {"val_loss": summary["val_loss"], "train_loss": summary["train_loss"], "steps": summary["step"],
            "seconds": round(seconds, 1), "tokens_per_s": summary["tokens_per_s"],
            "nanogpt_val_loss": NANOGPT_VAL_LOSS, "goal_met": summary["val_loss"] <= NANOGPT_VAL_LOSS}


def speed(work: Path, data: Path, args: argparse.Namespace) -> dict:
    out = {}
    for nproc in (1, 2):
        fields = {**NANOGPT_CPU, "max_steps": args.steps, "eval_batches": 1, "log_every": args.steps}
        _, seconds = train(work, f"speed_{nproc}", data, nproc, args.threads, **fields)
        out[f"{nproc}_process"] = {**measured_steps(work / f"speed_{nproc}", args.warmup), "seconds": round(seconds, 1)}
    out["ratio_2_to_1"] = out["2_process"]["tokens_per_s"] / out["1_process"]["tokens_per_s"]
    return out


def gpu(work: Path, data: Path, args: argparse.Namespace) -> dict:
    fields = {
        "model": "gpt2-124m",
        "model_overrides": {"vocab_size": 50304},  # GPT-2's padded vocabulary: the preset's true shape
        "micro_batch_size": args.micro_batch,
        "tokens_per_step": args.micro_batch * 1024 * args.grad_accum,
        "max_steps": args.warmup + args.steps,
        "lr": 6e-4, "min_lr": 6e-5, "warmup_steps": 10, "beta2": 0.95,
        "eval_every": 0, "eval_batches": 2, "sample_every": 0, "sample_tokens": 32,
        "checkpoint_every": 0, "log_every": 10, "device": "cuda", "dtype": "bfloat16", "compile": True,
        "use_mlflow": False,
    }  # fmt: skip
    summary, seconds = train(work, "gpu", data, 1, **fields)
    return {**measured_steps(work / "gpu", args.warmup), "warmup_steps": args.warmup, "seconds": round(seconds, 1),
            "tokens_per_step": summary["tokens_per_step"], "final_train_loss": summary["train_loss"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("which", choices=["quality", "speed", "gpu"])
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--steps", type=int, help="measured steps (quality: 2000, speed: 60, gpu: 50)")
    parser.add_argument("--warmup", type=int, default=10, help="steps left out of speed measurements")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads per process (quality, speed)")
    parser.add_argument("--micro-batch", type=int, default=16, help="gpu: sequences of 1,024 tokens per forward")
    parser.add_argument("--grad-accum", type=int, default=4, help="gpu: micro-steps per optimizer step")
    parser.add_argument("--workdir", type=Path, help="keep runs here (default: a temporary folder)")
    parser.add_argument("--output", type=Path, help="also write the results as JSON here")
    args = parser.parse_args()
    args.steps = args.steps or {"quality": 2000, "speed": 60, "gpu": 50}[args.which]
    logging.basicConfig(level=logging.INFO, format="%(message)s", force=True)  # prefect configured logging
    text = args.shared / "corpora" / "tinyshakespeare.txt"
    if not text.is_file():
        sys.exit(f"error: {text} not found (pass --shared)")
    with tempfile.TemporaryDirectory(prefix="fineforge-bench-") as tmp:
        work = args.workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        data = write_shakespeare(text, work / "shards")
        result = {"quality": quality, "speed": speed, "gpu": gpu}[args.which](work, data, args)
    print(json.dumps({args.which: result}, indent=2))
    if args.output:
        args.output.write_text(json.dumps({args.which: result}, indent=2))


if __name__ == "__main__":
    main()
