"""Roll-out throughput: the batched engine vs one sequence at a time, same model, rows and budget (goal >= 5x).

    .venv/bin/python -m benchmarks.rollouts [--preset small-cpu] [--new-tokens 128] [--rows 16] [--threads 1]

The rows are real RL prompts: GSM8K train questions rendered as chat prompts (bytes tokenizer), of
different lengths. Two batches of `--rows` rows: 4 prompts x (rows / 4) samples (each prompt encoded once),
and `--rows` different prompts. Each row samples `--new-tokens` tokens (temperature 1, no stop token, so
both sides generate exactly the same number) with its own seed; one at a time means the same engine, KV
cache included, given one row per call. Both sides must produce the same tokens (rows are independent of
their batch), which the benchmark checks. tokens/s counts generated tokens per wall second, prompt
encoding included; on a shared machine, where other jobs take the cores, the ratio of the process's CPU
time (with one thread: the compute each side needs) is the steadier number. The model has random
weights: speed does not depend on them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

from fineforge.model.chat import ChatTemplate
from fineforge.model.engine import Engine, Request, SamplingConfig, row_seed
from fineforge.model.gpt import GPT, GPTConfig
from fineforge.model.tokenizer import load_tokenizer

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FINEFORGE_SHARED_DATA", ROOT.parent / "shared" / "data"))
GSM8K = "gsm8k/train.jsonl"
GOAL_RATIO = 5.0
SAMPLES_PER_PROMPT_CASE = 4  # prompts of the first case


def gsm8k_prompts(template: ChatTemplate, count: int, max_tokens: int) -> list[list[int]]:
    """The first `count` GSM8K train questions whose chat prompt fits in `max_tokens`."""
    prompts = []
    with open(SHARED / GSM8K) as f:
        for line in f:
            prompt = template.render_prompt([{"role": "user", "content": json.loads(line)["question"]}])
            if len(prompt) <= max_tokens:
                prompts.append(prompt)
            if len(prompts) == count:
                return prompts
    raise SystemExit(f"only {len(prompts)} GSM8K questions fit in {max_tokens} tokens")


def timed(run) -> tuple[float, float, list[list[int]]]:
    """Wall seconds, CPU seconds of this process, and the tokens of one run."""
    wall, cpu = time.perf_counter(), time.process_time()
    tokens = run()
    return time.perf_counter() - wall, time.process_time() - cpu, tokens


def compare(engine: Engine, requests: list[Request], config: SamplingConfig) -> dict:
    """Batched vs one at a time on the same rows: tokens/s, ratios (wall and CPU time), identical tokens."""
    batched_s, batched_cpu, batched = timed(lambda: [c.tokens for c in engine.generate_batch(requests, config)])
    single_s, single_cpu, single = timed(lambda: [engine.generate_batch([r], config)[0].tokens for r in requests])
    generated = sum(len(t) for t in batched)
    return {
        "rows": len(requests),
        "distinct_prompts": len({tuple(r.prompt) for r in requests}),
        "prompt_tokens": [min(len(r.prompt) for r in requests), max(len(r.prompt) for r in requests)],
        "generated_tokens": generated,
        "batched_tokens_per_s": round(generated / batched_s, 1),
        "one_at_a_time_tokens_per_s": round(generated / single_s, 1),
        "ratio": round(single_s / batched_s, 2),
        "cpu_time_ratio": round(single_cpu / batched_cpu, 2),
        "identical_tokens": batched == single,
    }


def throughput(engine: Engine, prompts: list[list[int]], rows: int, sampling: SamplingConfig) -> dict[str, dict]:
    """`compare` on two batches of `rows` rows: 4 prompts x (rows / 4) samples, and `rows` different prompts."""
    per_prompt = rows // SAMPLES_PER_PROMPT_CASE
    cases = {
        f"{SAMPLES_PER_PROMPT_CASE} prompts x {per_prompt} samples": [
            p for p in prompts[:SAMPLES_PER_PROMPT_CASE] for _ in range(per_prompt)],
        f"{rows} different prompts": prompts[:rows],
    }
    engine.generate_batch([Request(p, max_new_tokens=8) for p in prompts[:2]], sampling)  # warm-up
    return {name: compare(engine, [Request(p, seed=row_seed(0, r)) for r, p in enumerate(case)], sampling)
            for name, case in cases.items()}


def print_throughput(results: dict[str, dict]) -> None:
    """The markdown table of `throughput`'s results."""
    print(f"| case | rows | prompt tokens | batched tokens/s | one at a time tokens/s | ratio (goal >= "
          f"{GOAL_RATIO:.0f}x) | ratio of CPU time | identical |")
    print("|---|---:|---|---:|---:|---:|---:|---|")
    for name, result in results.items():
        low, high = result["prompt_tokens"]
        print(f"| {name} | {result['rows']} | {low}-{high} | {result['batched_tokens_per_s']} | "
              f"{result['one_at_a_time_tokens_per_s']} | {result['ratio']}x | {result['cpu_time_ratio']}x | "
              f"{result['identical_tokens']} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="small-cpu", help="model preset (default small-cpu)")
    parser.add_argument("--tokenizer", default="gpt2", help="bytes, gpt2, cl100k_base, ... (default gpt2)")
    parser.add_argument("--new-tokens", type=int, default=128, help="tokens sampled per row")
    parser.add_argument("--rows", type=int, default=16, help="rows per batch (a multiple of 4)")
    parser.add_argument("--context", type=int, default=None, help="the model's context (default: the preset's)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if args.rows % SAMPLES_PER_PROMPT_CASE:
        parser.error(f"--rows must be a multiple of {SAMPLES_PER_PROMPT_CASE}")
    if args.threads:
        torch.set_num_threads(args.threads)

    tokenizer = load_tokenizer(args.tokenizer, SHARED / "tokenizers")
    torch.manual_seed(0)
    shape = {"block_size": args.context} if args.context else {}
    config = GPTConfig.from_preset(args.preset, vocab_size=tokenizer.vocab_size, **shape)
    model = GPT(config).to(args.device).eval()
    engine = Engine(model, vocab_size=tokenizer.vocab_size)
    # prompts leave room for the new tokens, so no row's context shifts
    prompts = gsm8k_prompts(ChatTemplate(tokenizer), args.rows, config.block_size - args.new_tokens)
    sampling = SamplingConfig(max_new_tokens=args.new_tokens, temperature=1.0)

    print(f"{args.preset} ({model.num_parameters():,} parameters, context {config.block_size}), "
          f"{args.new_tokens} new tokens per row, {torch.get_num_threads()} threads on {args.device}")
    results = throughput(engine, prompts, args.rows, sampling)
    print_throughput(results)
    print(json.dumps({"preset": args.preset, "new_tokens": args.new_tokens, "threads": torch.get_num_threads(),
                      "device": args.device, "cases": results}))
    if not all(r["identical_tokens"] for r in results.values()):
        sys.exit("batched and one-at-a-time roll-outs differ")


if __name__ == "__main__":
    main()
