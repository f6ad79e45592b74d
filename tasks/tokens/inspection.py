"""Reading a shard set back: its folder and per-shard statistics (its tokenizer: `model.shards.shards_tokenizer`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fineforge.model.shards import MANIFEST, ShardError, read_shard


def shard_directory(path: str | Path) -> Path:
    """The shard folder of PATH: the folder itself, or the folder of a shard file."""
    path = Path(path)
    directory = path if path.is_dir() else path.parent
    if not (directory / MANIFEST).is_file():
        raise ShardError(f"{directory}: no {MANIFEST} (not a token shard folder)")
    return directory


def shard_statistics(directory: Path, manifest: dict) -> list[dict]:
    """Per shard: split, tokens, documents (end-of-document tokens), mean document length, ids range."""
    rows = []
    eot = manifest["eot_id"]
    for shard in manifest["shards"]:
        path = directory / shard["file"]
        tokens = read_shard(path)
        count = int(tokens.size)
        documents = int(np.count_nonzero(tokens == eot))
        rows.append({
            "file": shard["file"], "split": shard["split"], "tokens": count, "documents": documents,
            "mean_document_tokens": round(count / documents, 1) if documents else None,
            "min_id": int(tokens.min()) if count else None, "max_id": int(tokens.max()) if count else None,
        })
    return rows

