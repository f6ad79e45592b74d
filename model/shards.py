"""Token shards in llm.c's format: a 256 x int32 header, then the tokens.

Header: magic 20240520, version (1: uint16 tokens, 7: uint32 tokens, as in llm.c), token count.
A directory of shards carries `manifest.json`: tokenizer, vocabulary size, dtype, token counts and
the sha256 of each shard.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

MAGIC = 20240520
HEADER_INTS = 256
HEADER_BYTES = HEADER_INTS * 4
VERSION_BY_DTYPE = {"uint16": 1, "uint32": 7}
DTYPE_BY_VERSION = {v: k for k, v in VERSION_BY_DTYPE.items()}
MANIFEST = "manifest.json"


class ShardError(ValueError):
    """A shard or manifest that cannot be trusted: wrong magic, truncated, bad checksum."""


def shard_dtype(vocab_size: int) -> str:
    """The smallest token dtype that holds every id of a vocabulary."""
    if vocab_size <= 2**16:
        return "uint16"
    if vocab_size <= 2**32:
        return "uint32"
    raise ShardError(f"vocabulary of {vocab_size} tokens does not fit uint32 shards")


def write_shard(path: str | Path, tokens: np.ndarray, dtype: str) -> str:
    """Write tokens as one shard, atomically; return its sha256."""
    path = Path(path)
    if dtype not in VERSION_BY_DTYPE:
        raise ShardError(f"unsupported shard dtype {dtype!r}")
    tokens = np.asarray(tokens)
    if tokens.size and int(tokens.max()) >= np.iinfo(dtype).max + 1:
        raise ShardError(f"token id {int(tokens.max())} does not fit {dtype}")
    header = np.zeros(HEADER_INTS, dtype=np.int32)
    header[0], header[1], header[2] = MAGIC, VERSION_BY_DTYPE[dtype], tokens.size
    body = tokens.astype(dtype, copy=False).tobytes()
    blob = header.tobytes() + body
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(blob)
    os.replace(tmp, path)
    return hashlib.sha256(blob).hexdigest()


def read_header(path: str | Path) -> tuple[str, int]:
    """Validate a shard's header and size; return (dtype, token count)."""
    path = Path(path)
    size = path.stat().st_size
    if size < HEADER_BYTES:
        raise ShardError(f"{path}: truncated header ({size} bytes)")
    header = np.fromfile(path, dtype=np.int32, count=HEADER_INTS)
    if header[0] != MAGIC:
        raise ShardError(f"{path}: wrong magic number {header[0]} (expected {MAGIC})")
    if int(header[1]) not in DTYPE_BY_VERSION:
        raise ShardError(f"{path}: unknown version {header[1]}")
    dtype, count = DTYPE_BY_VERSION[int(header[1])], int(header[2])
    expected = HEADER_BYTES + count * np.dtype(dtype).itemsize
    if size != expected:
        raise ShardError(f"{path}: {size} bytes, header promises {expected} (truncated or corrupt)")
    return dtype, count


def read_shard(path: str | Path) -> np.ndarray:
    """Memory-map a validated shard's tokens."""
    dtype, count = read_header(path)
    return np.memmap(path, dtype=dtype, mode="r", offset=HEADER_BYTES, shape=(count,))


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(directory: str | Path, manifest: dict) -> None:
    """Write manifest.json atomically."""
    path = Path(directory) / MANIFEST
    tmp = path.with_name(f".{MANIFEST}.tmp")
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True))
    os.replace(tmp, path)


def load_manifest(directory: str | Path, verify: bool = True) -> dict:
    """Read manifest.json; with verify, check every shard's header and sha256 against it.

    The manifest lists shards as {"file", "split", "tokens", "sha256"} under "shards".
    """
    directory = Path(directory)
    path = directory / MANIFEST
    if not path.is_file():
        raise ShardError(f"{directory}: no {MANIFEST}")
    manifest = json.loads(path.read_text())
    if verify:
        for shard in manifest.get("shards", []):
            shard_path = directory / shard["file"]
            if not shard_path.is_file():
                raise ShardError(f"{shard_path}: listed in the manifest but missing")
            _, count = read_header(shard_path)
            if count != shard["tokens"]:
                raise ShardError(f"{shard_path}: {count} tokens, manifest says {shard['tokens']}")
            if file_sha256(shard_path) != shard["sha256"]:
                raise ShardError(f"{shard_path}: sha256 does not match the manifest")
    return manifest


def write_shard_set(
    directory: str | Path, parts: list[tuple[str, np.ndarray]], tokenizer: str, vocab_size: int
) -> dict:
    """Write (split, tokens) parts as `<split>_NNNNNN.bin` (numbered within each split) plus manifest.json."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    dtype = shard_dtype(vocab_size)
    numbers: dict[str, int] = {}
    shards = []
    for split, tokens in parts:
        name = f"{split}_{numbers.get(split, 0):06d}.bin"
        numbers[split] = numbers.get(split, 0) + 1
        digest = write_shard(directory / name, tokens, dtype)
        shards.append({"file": name, "split": split, "tokens": int(np.asarray(tokens).size), "sha256": digest})
    manifest = {"tokenizer": tokenizer, "vocab_size": vocab_size, "dtype": dtype, "shards": shards}
    write_manifest(directory, manifest)
    return manifest
