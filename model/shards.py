"""Token shards in llm.c's format: a 256 x int32 header, then the tokens.

Header: magic 20240520, version (1: uint16 tokens, 7: uint32 tokens, as in llm.c), token count.
A directory of shards carries `manifest.json`: tokenizer, vocabulary size, dtype, token counts and
the sha256 of each shard. This module is the manifest's one writer and reader, and knows which
tokenizer wrote a shard set (`tokenizer_spec`).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from fineforge.model.tokenizer import BPETokenizer, Tokenizer, load_tokenizer

MAGIC = 20240520
HEADER_INTS = 256
HEADER_BYTES = HEADER_INTS * 4
VERSION_BY_DTYPE = {"uint16": 1, "uint32": 7}
DTYPE_BY_VERSION = {v: k for k, v in VERSION_BY_DTYPE.items()}
MANIFEST = "manifest.json"
TOKENIZER_COPY = "tokenizer.json"  # a trained tokenizer, copied beside the shards it wrote
MAX_MANIFEST_BYTES = 16 << 20
MANIFEST_FIELDS = {"tokenizer": str, "vocab_size": int, "dtype": str, "shards": list}
SHARD_FIELDS = {"file": str, "split": str, "tokens": int, "sha256": str}


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


def shard_entry(path: str | Path, split: str, tokens: int, sha256: str) -> dict:
    """The manifest's record of one shard (its file name, relative to the shard folder)."""
    return {"file": Path(path).name, "split": split, "tokens": int(tokens), "sha256": sha256}


def write_manifest(directory: str | Path, tokenizer: Tokenizer, dtype: str, shards: list[dict], **details: Any) -> dict:
    """Build manifest.json for the shards in `directory`, write it atomically and return it.

    It records the tokenizer's identity (name, vocabulary size, end-of-document and special tokens), the
    dtype, the tokens per split and every shard (`shard_entry`); `details` adds what the writer knows
    (documents per split, shard size, ...). A trained tokenizer's JSON file is copied beside the shards as
    tokenizer.json, so the shards carry the tokenizer that wrote them.
    """
    directory = Path(directory)
    tokens: dict[str, int] = {}
    for shard in shards:
        tokens[shard["split"]] = tokens.get(shard["split"], 0) + shard["tokens"]
    manifest = {
        "tokenizer": tokenizer.name, "vocab_size": tokenizer.vocab_size, "dtype": dtype, "eot_id": tokenizer.eot_id,
        "special_tokens": tokenizer.special_tokens, "tokens": tokens, "shards": shards, **details,
    }  # fmt: skip
    if isinstance(tokenizer, BPETokenizer):  # its name is its file's path
        shutil.copyfile(tokenizer.name, directory / TOKENIZER_COPY)
        manifest["tokenizer_file"] = TOKENIZER_COPY
    check_manifest(manifest, directory)
    path = directory / MANIFEST
    tmp = path.with_name(f".{MANIFEST}.tmp")
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True))
    os.replace(tmp, path)
    return manifest


def _require(ok: bool, where: Path, message: str) -> None:
    if not ok:
        raise ShardError(f"{where / MANIFEST}: {message}")


def check_manifest(manifest: Any, directory: Path) -> None:
    """The fields a reader relies on are there, with the right types; shard files are plain names."""
    _require(isinstance(manifest, dict), directory, "not a JSON object")
    for name, kind in MANIFEST_FIELDS.items():
        _require(isinstance(manifest.get(name), kind), directory, f"field {name!r} must be {kind.__name__}")
    _require(manifest["dtype"] in VERSION_BY_DTYPE, directory, f"unknown dtype {manifest['dtype']!r}")
    for i, shard in enumerate(manifest["shards"]):
        ok = isinstance(shard, dict) and all(isinstance(shard.get(k), t) for k, t in SHARD_FIELDS.items())
        _require(ok, directory, f"shard {i} needs {', '.join(SHARD_FIELDS)}")
        _require(Path(shard["file"]).name == shard["file"] and shard["file"] not in ("", ".", ".."), directory,
                 f"shard {i}: {shard['file']!r} is not a file name in the shard folder")
    copy = manifest.get("tokenizer_file")
    _require(copy in (None, TOKENIZER_COPY), directory, f"tokenizer_file must be {TOKENIZER_COPY!r}, got {copy!r}")


def read_bounded_json(path: Path, limit: int, error: type[Exception], missing: str) -> Any:
    """A small JSON file's content; `error(missing)` when it is absent, `error` naming it when over `limit` bytes
    (a larger file is not one of ours) or not JSON."""
    if not path.is_file():
        raise error(missing)
    size = path.stat().st_size
    if size > limit:
        raise error(f"{path}: {size} bytes, more than this file can be ({limit})")
    try:
        return json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise error(f"{path}: not JSON ({exc})") from exc


def load_manifest(directory: str | Path, verify: bool = True) -> dict:
    """Read and check manifest.json; with verify, check every shard's header, token count and sha256 against it."""
    directory = Path(directory)
    manifest = read_bounded_json(directory / MANIFEST, MAX_MANIFEST_BYTES, ShardError, f"{directory}: no {MANIFEST}")
    check_manifest(manifest, directory)
    if verify:
        for shard in manifest["shards"]:
            shard_path = directory / shard["file"]
            if not shard_path.is_file():
                raise ShardError(f"{shard_path}: listed in the manifest but missing")
            _, count = read_header(shard_path)
            if count != shard["tokens"]:
                raise ShardError(f"{shard_path}: {count} tokens, manifest says {shard['tokens']}")
            if file_sha256(shard_path) != shard["sha256"]:
                raise ShardError(f"{shard_path}: sha256 does not match the manifest")
    return manifest


def tokenizer_spec(directory: str | Path, manifest: dict) -> str:
    """The spec of the tokenizer that wrote the shards: the trained tokenizer kept beside them, else the
    manifest's name (a published encoding, or "bytes")."""
    if manifest.get("tokenizer_file"):
        return str(Path(directory) / manifest["tokenizer_file"])
    return manifest["tokenizer"]


def shards_tokenizer(directory: str | Path, manifest: dict, vocab_dir: str | Path | None = None) -> Tokenizer:
    """The tokenizer that wrote the shards (see `tokenizer_spec`)."""
    return load_tokenizer(tokenizer_spec(directory, manifest), vocab_dir)


def write_shard_set(directory: str | Path, parts: list[tuple[str, np.ndarray]], tokenizer: Tokenizer) -> dict:
    """Write (split, tokens) parts as `<split>_NNNNNN.bin` (numbered within each split) plus manifest.json."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    dtype = shard_dtype(tokenizer.vocab_size)
    numbers: dict[str, int] = {}
    shards = []
    for split, tokens in parts:
        path = directory / f"{split}_{numbers.get(split, 0):06d}.bin"
        numbers[split] = numbers.get(split, 0) + 1
        shards.append(shard_entry(path, split, np.asarray(tokens).size, write_shard(path, tokens, dtype)))
    return write_manifest(directory, tokenizer, dtype, shards)
