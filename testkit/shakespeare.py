"""Token shards of tinyshakespeare (bytes tokenizer) for training tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fineforge.model.shards import write_shard_set
from fineforge.model.tokenizer import load_tokenizer

VAL_FRACTION = 0.1


def write_shakespeare_shards(text_path: Path, out_dir: Path, train_shards: int = 2, limit: int | None = None) -> Path:
    """Encode tinyshakespeare with the bytes tokenizer into train/val shards plus manifest.json."""
    tokenizer = load_tokenizer("bytes")
    text = Path(text_path).read_text()[:limit]
    tokens = np.asarray(tokenizer.encode(text), dtype=np.uint32)
    n_val = int(len(tokens) * VAL_FRACTION)
    parts = [("val", tokens[:n_val])] + [("train", chunk) for chunk in np.array_split(tokens[n_val:], train_shards)]
    write_shard_set(out_dir, parts, tokenizer)
    return out_dir
