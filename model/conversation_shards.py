"""Conversation shard sets: whole conversations as tokens + loss mask + per-conversation index.

A conversation shard set is a folder with `manifest.json` ("kind": "conversations") and, per shard,
three files of one split holding whole conversations back to back:
- `<split>_NNNNNN.bin`: the tokens, in llm.c's shard format (`model/shards.py`);
- `<split>_NNNNNN.mask.npy`: uint8, one value per token, 1 where the token is a training target;
- `<split>_NNNNNN.index.npy`: one record per conversation: `start` (token offset in the shard),
  `length` (tokens), `weight` (the loss weight of its trainable tokens), `source` (index into the
  manifest's "sources").
The SFT batches read from them are in `model/conversation_data.py`; the stage that writes them in
`tasks/conversations/job.py`; the format in `docs/conversations.md`.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fineforge.model.shards import ShardError, file_sha256, load_manifest, read_shard, write_shard

CONVERSATIONS_KIND = "conversations"
MASK_SUFFIX = ".mask.npy"
INDEX_SUFFIX = ".index.npy"
INDEX_DTYPE = np.dtype([("start", "<i8"), ("length", "<i4"), ("weight", "<f4"), ("source", "<i2")])


def _write_npy(path: Path, array: np.ndarray) -> str:
    """Save an array as .npy atomically; return the file's sha256."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        np.save(f, array, allow_pickle=False)
    os.replace(tmp, path)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_conversation_shard(
    directory: Path, name: str, split: str, tokens: np.ndarray, mask: np.ndarray, index: np.ndarray, dtype: str
) -> dict:
    """Write one shard's three files; return its manifest entry."""
    if tokens.shape != mask.shape:
        raise ShardError(f"{name}: {tokens.size} tokens but {mask.size} mask values")
    entry = {"file": f"{name}.bin", "split": split, "tokens": int(tokens.size), "conversations": int(index.size)}
    entry["sha256"] = write_shard(directory / entry["file"], tokens, dtype)
    entry["mask_file"], entry["index_file"] = f"{name}{MASK_SUFFIX}", f"{name}{INDEX_SUFFIX}"
    entry["mask_sha256"] = _write_npy(directory / entry["mask_file"], mask.astype(np.uint8, copy=False))
    entry["index_sha256"] = _write_npy(directory / entry["index_file"], index.astype(INDEX_DTYPE, copy=False))
    entry["trainable_tokens"] = int(np.count_nonzero(mask))
    return entry


@dataclass
class ConversationShard:
    """One shard's tokens, mask and index, memory-mapped and checked against each other."""

    path: Path
    tokens: np.ndarray
    mask: np.ndarray
    index: np.ndarray


def _load_npy(path: Path, expected_sha256: str | None) -> np.ndarray:
    if not path.is_file():
        raise ShardError(f"{path}: listed in the manifest but missing")
    if expected_sha256 is not None and file_sha256(path) != expected_sha256:
        raise ShardError(f"{path}: sha256 does not match the manifest")
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as exc:
        raise ShardError(f"{path}: not a readable .npy file: {exc}") from exc


def open_conversation_shard(directory: Path, entry: dict, verify: bool = True) -> ConversationShard:
    """Open one manifest entry's files; check that mask and index agree with the tokens."""
    path = directory / entry["file"]
    tokens = read_shard(path)
    mask = _load_npy(directory / entry["mask_file"], entry["mask_sha256"] if verify else None)
    index = _load_npy(directory / entry["index_file"], entry["index_sha256"] if verify else None)
    if mask.shape != tokens.shape:
        raise ShardError(f"{path}: {tokens.size} tokens but {mask.size} mask values")
    if index.dtype != INDEX_DTYPE:
        raise ShardError(f"{path}: index dtype {index.dtype}, expected {INDEX_DTYPE}")
    ends = index["start"].astype(np.int64) + index["length"]
    if index.size and (index["start"][0] != 0 or ends[-1] != tokens.size or np.any(index["start"][1:] != ends[:-1])):
        raise ShardError(f"{path}: the index does not tile the shard's {tokens.size} tokens")
    return ConversationShard(path, tokens, mask, index)


def conversation_split(data_dir: str | Path, split: str, verify: bool = True) -> tuple[list[ConversationShard], dict]:
    """The shards of one split of a conversation shard set, checked (sha256 of every file with `verify`)."""
    data_dir = Path(data_dir)
    manifest = load_manifest(data_dir, verify=verify)
    if not is_conversation_set(manifest):
        raise ShardError(f"{data_dir}: not a conversation shard set (build one with `fineforge conversations build`)")
    shards = [open_conversation_shard(data_dir, s, verify) for s in manifest["shards"] if s["split"] == split]
    if not any(s.index.size for s in shards):
        raise ShardError(f"{data_dir}: the manifest lists no {split!r} conversations")
    return shards, manifest


def is_conversation_set(manifest: dict) -> bool:
    return manifest.get("kind") == CONVERSATIONS_KIND


def verify_conversation_set(directory: str | Path, manifest: dict) -> None:
    """Check every shard's token, mask and index files against the manifest (ShardError on the first problem)."""
    for entry in manifest["shards"]:
        open_conversation_shard(Path(directory), entry, verify=True)


def shard_mask(directory: str | Path, manifest: dict, shard_file: str) -> np.ndarray:
    """The loss mask of one shard of a conversation set, memory-mapped."""
    entry = next((e for e in manifest["shards"] if e["file"] == shard_file), None)
    if entry is None:
        raise ShardError(f"{shard_file} is not listed in the manifest of {directory}")
    return _load_npy(Path(directory) / entry["mask_file"], None)


def conversation_shard_rows(directory: str | Path, manifest: dict) -> list[dict]:
    """Per shard: split, tokens, conversations, trainable tokens, mean conversation length, id range."""
    rows = []
    for entry in manifest["shards"]:
        shard = open_conversation_shard(Path(directory), entry, verify=False)
        count, conversations = int(shard.tokens.size), int(shard.index.size)
        rows.append({
            "file": entry["file"], "split": entry["split"], "tokens": count, "documents": conversations,
            "trainable_tokens": int(np.count_nonzero(shard.mask)),
            "mean_document_tokens": round(count / conversations, 1) if conversations else None,
            "min_id": int(shard.tokens.min()) if count else None, "max_id": int(shard.tokens.max()) if count else None,
        })
    return rows
