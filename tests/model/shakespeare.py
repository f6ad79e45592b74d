"""Token shards of tinyshakespeare (bytes tokenizer) for training tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from model.shards import shard_dtype, write_manifest, write_shard
from model.tokenizer import load_tokenizer

VAL_FRACTION = 0.1


def write_shakespeare_shards(text_path: Path, out_dir: Path, train_shards: int = 2, limit: int | None = None) -> Path:
    """Encode tinyshakespeare with the bytes tokenizer into train/val shards plus manifest.json."""
    tokenizer = load_tokenizer("bytes")
    text = Path(text_path).read_text()[:limit]
    tokens = np.asarray(tokenizer.encode(text), dtype=np.uint32)
    n_val = int(len(tokens) * VAL_FRACTION)
    dtype = shard_dtype(tokenizer.vocab_size)
    out_dir.mkdir(parents=True, exist_ok=True)
    parts = [("val", 0, tokens[:n_val])]
    parts += [("train", i, chunk) for i, chunk in enumerate(np.array_split(tokens[n_val:], train_shards))]
    shards = []
    for split, index, chunk in parts:
        name = f"{split}_{index:06d}.bin"
        digest = write_shard(out_dir / name, chunk, dtype)
        shards.append({"file": name, "split": split, "tokens": int(chunk.size), "sha256": digest})
    write_manifest(out_dir, {"tokenizer": "bytes", "vocab_size": tokenizer.vocab_size, "dtype": dtype,
                             "shards": shards})
    return out_dir
