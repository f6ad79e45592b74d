"""Generation benchmark: tokens/s with and without the KV cache, side by side in one run (goal >= 5x).

    .venv/bin/python -m benchmarks.generate [--preset small-cpu] [--new-tokens 256] [--threads 1]

A model of the preset's shape (random weights: speed does not depend on them) continues a real prompt,
the first `--prompt-tokens` bytes of tinyshakespeare, by `--new-tokens` tokens with greedy decoding,
once with the cache and once without; the two must produce the same tokens. tokens/s counts generated
tokens (all samples) per wall second, prompt encoding included.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from fineforge.model.engine import Engine, SamplingConfig
from fineforge.model.gpt import GPT, GPTConfig
from fineforge.model.tokenizer import load_tokenizer

ROOT = Path(__file__).resolve().parents[1]

CORPUS = "corpora/tinyshakespeare.txt"
WARMUP_TOKENS = 8
GOAL_RATIO = 5.0


def timed_generate(engine: Engine, prompt: list[int], config: SamplingConfig) -> tuple[float, list[list[int]]]:
    """Wall seconds of one generation, and its tokens."""
    start = time.perf_counter()
    samples = engine.generate(prompt, config)
    return time.perf_counter() - start, [s.tokens for s in samples]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="small-cpu", help="model preset (default small-cpu)")
    parser.add_argument("--new-tokens", type=int, default=256)
    parser.add_argument("--prompt-tokens", type=int, default=64)
    parser.add_argument("--num-samples", type=int, default=1, help="samples of the prompt in one batch")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "data")
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    tokenizer = load_tokenizer("bytes")
    prompt = tokenizer.encode((args.shared / CORPUS).read_text()[: args.prompt_tokens])
    torch.manual_seed(0)
    config = GPTConfig.from_preset(args.preset, vocab_size=tokenizer.vocab_size)
    model = GPT(config).to(args.device).eval()
    engine = Engine(model, vocab_size=tokenizer.vocab_size)

    def sampling(new_tokens: int, use_kv_cache: bool) -> SamplingConfig:
        return SamplingConfig(max_new_tokens=new_tokens, temperature=0, num_samples=args.num_samples,
                              use_kv_cache=use_kv_cache)

    for use_kv_cache in (True, False):
        engine.generate(prompt, sampling(WARMUP_TOKENS, use_kv_cache))
    cached_s, cached_tokens = timed_generate(engine, prompt, sampling(args.new_tokens, True))
    plain_s, plain_tokens = timed_generate(engine, prompt, sampling(args.new_tokens, False))

    generated = args.new_tokens * args.num_samples
    result = {
        "preset": args.preset,
        "parameters": model.num_parameters(),
        "context": config.block_size,
        "prompt_tokens": len(prompt),
        "new_tokens": args.new_tokens,
        "num_samples": args.num_samples,
        "threads": torch.get_num_threads(),
        "device": args.device,
        "kv_cache_tokens_per_s": round(generated / cached_s, 1),
        "no_cache_tokens_per_s": round(generated / plain_s, 1),
        "speedup": round(plain_s / cached_s, 2),
        "identical_tokens": cached_tokens == plain_tokens,
    }
    print(f"{args.preset} ({result['parameters']:,} parameters, context {config.block_size}), prompt "
          f"{len(prompt)} tokens, {args.new_tokens} new tokens x {args.num_samples} samples, "
          f"{result['threads']} threads on {args.device}")
    print(f"  with KV cache   : {cached_s:8.2f} s  {result['kv_cache_tokens_per_s']:10.1f} tokens/s")
    print(f"  without cache   : {plain_s:8.2f} s  {result['no_cache_tokens_per_s']:10.1f} tokens/s")
    print(f"  speedup         : {result['speedup']:.2f}x (goal >= {GOAL_RATIO:.0f}x); identical tokens: "
          f"{result['identical_tokens']}")
    print(json.dumps(result))
    if not result["identical_tokens"]:
        sys.exit("cached and uncached generation differ")


if __name__ == "__main__":
    main()
