"""Conversation benchmark on the real SFT sources: OASST trees, GSM8K train, identity and word-problem generators.

    .venv/bin/python -m benchmarks.conversations [--tokenizer gpt2] [--context-length 1024] [--batch-size 32]

1. Build speed: the whole stage (read, validate, render with masks, write shards + manifest + records) in
   conversations/s and tokens/s, against the tokenizer alone encoding the same message texts one by one
   (what the stage does) and in one batch; the ratios say what the stage costs beyond tokenization.
2. Padding of one epoch of SFT batches: rows of the full context, rows as wide as the batch's longest
   conversation, and the loader's default (batches grouped by length); padding fraction and positions
   computed, side by side.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FINEFORGE_SHARED_DATA", ROOT.parent / "shared" / "data"))


def build(workdir: Path, tokenizer: str, context_length: int) -> tuple[dict, float]:
    """Build the conversation set of every real source; return its stats and the wall time."""
    from fineforge.tasks.conversations.config import ConversationsConfig
    from fineforge.tasks.conversations.job import build_conversations, stage_tokenizer

    config = ConversationsConfig(
        workdir=str(workdir), name="bench", tokenizer=tokenizer, vocab_dir=str(SHARED / "tokenizers"),
        context_length=context_length,
        sources=[
            {"kind": "oasst", "path": str(SHARED / "sft" / "oasst-en-100-trees.jsonl")},
            {"kind": "gsm8k", "path": str(SHARED / "gsm8k" / "train.jsonl")},
            {"kind": "identity", "assistant_name": "Forge", "maker": "the fineforge team", "count": 1000},
            {"kind": "word_problems", "count": 5000},
        ],
    )
    loaded = stage_tokenizer(config)
    started = time.perf_counter()
    stats = build_conversations(config, loaded)
    return stats, time.perf_counter() - started


def encode_seconds(out_dir: Path, tokenizer: str) -> tuple[float, float]:
    """Seconds to encode every kept message text one by one, and as one batch."""
    from fineforge.model.tokenizer import load_tokenizer

    tok = load_tokenizer(tokenizer, SHARED / "tokenizers")
    texts = [m["content"] for split in ("train", "val")
             for line in (out_dir / f"{split}.jsonl").read_text().splitlines()
             for m in json.loads(line)["messages"]]
    started = time.perf_counter()
    for text in texts:
        tok.encode(text)
    one_by_one = time.perf_counter() - started
    started = time.perf_counter()
    tok.encode_batch(texts)
    return one_by_one, time.perf_counter() - started


def padding(out_dir: Path, batch_size: int, seq_len: int, group_steps: int | None) -> tuple[float, int]:
    """(padding fraction, positions computed) of one epoch; group_steps None: rows of the full seq_len."""
    from fineforge.model.conversation_data import conversation_loader

    loader = conversation_loader(out_dir, "train", batch_size, seq_len, group_steps=group_steps or 1)
    padded = computed = 0
    for _ in range(loader.num_conversations // batch_size):
        _, targets, _ = loader.next_batch()
        rows, width = targets.shape
        width = seq_len if group_steps is None else width
        real = int((targets != -1).sum())
        padded += rows * width - real
        computed += rows * width
    return padded / computed, computed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokenizer", default="gpt2")
    parser.add_argument("--context-length", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fineforge-bench-conv-") as tmp:
        stats, seconds = build(Path(tmp), args.tokenizer, args.context_length)
        out_dir = Path(tmp) / "conversations" / "bench"
        one_by_one, batch = encode_seconds(out_dir, args.tokenizer)
        tokens = stats["tokens_train"] + stats["tokens_val"]
        print(f"build: {stats['conversations_in']:,} conversations, {tokens:,} tokens ({args.tokenizer}) in "
              f"{seconds:.2f}s = {stats['conversations_in'] / seconds:,.0f} conversations/s, "
              f"{tokens / seconds:,.0f} tokens/s")
        print(f"encode alone: one by one {one_by_one:.2f}s, batch {batch:.2f}s; stage / one-by-one encode = "
              f"{seconds / one_by_one:.2f}x, stage / batch encode = {seconds / batch:.2f}x")
        seq_len = args.context_length - 1
        rows = {"full context": None, "batch's longest": 1, "grouped by length (default)": 16}
        results = {name: padding(out_dir, args.batch_size, seq_len, g) for name, g in rows.items()}
        full = results["full context"][1]
        print(f"padding over one epoch, batch {args.batch_size}, seq_len {seq_len}:")
        for name, (fraction, computed) in results.items():
            print(f"  {name:28s} padding {fraction:6.1%}  positions {computed:>12,}  ({computed / full:.2f}x)")


if __name__ == "__main__":
    main()
