"""The per-document part of the tokenize stage, run on the Spark workers (so it imports no Prefect).

A document is split by a hash of its id, checked (empty, invalid UTF-8: dropped and counted) and
tokenized with the end-of-document token after it; a task reads its slice of the Parquet input with
pyarrow and writes its tokens per split to part files.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Callable, Iterator
from functools import lru_cache
from pathlib import Path

import numpy as np
import pyarrow as pa

from fineforge.model.tokenizer import Tokenizer, load_tokenizer
from fineforge.tasks.common.documents import hash_below
from fineforge.tasks.tokens.slices import Slice, read_slice

SPLITS = ("train", "val")
# Threads of the `tokenizers` library (Rust rayon pool): set to the Spark task's cores, as Spark already
# runs one task per core; more would oversubscribe the executor.
RAYON_THREADS_ENV = "RAYON_NUM_THREADS"
# Dropped documents, by reason.
EMPTY, INVALID_UTF8 = "empty", "invalid_utf8"


def validation_split(doc_id: str, val_fraction: float) -> str:
    """"val" for a stable `val_fraction` share of document ids (by sha1 of the id), else "train"."""
    return "val" if hash_below(str(doc_id), val_fraction) else "train"


def document_text(value: bytes | str | None) -> tuple[str | None, str | None]:
    """(text, None) for a usable document, else (None, reason): empty or not valid UTF-8."""
    if value is None:
        return None, EMPTY
    if isinstance(value, bytes | bytearray | memoryview):
        try:
            value = bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            return None, INVALID_UTF8
    else:
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates
            return None, INVALID_UTF8
    if not value.strip():
        return None, EMPTY
    return value, None


def tokenize_documents(
    tokenizer: Tokenizer, ids: list, texts: list, val_fraction: float, dtype: str, shard_tokens: int
) -> tuple[dict[str, list[np.ndarray]], Counter]:
    """Tokenize a batch of documents: the token arrays (each ending in EOT) per split, and the counts."""
    counts: Counter = Counter(documents_in=len(texts))
    kept, splits = [], []
    for doc_id, value in zip(ids, texts, strict=True):
        text, reason = document_text(value)
        if reason:
            counts[f"dropped_{reason}"] += 1
            continue
        kept.append(text)
        splits.append(validation_split(doc_id, val_fraction))
        counts["bytes"] += len(text.encode("utf-8"))
    out: dict[str, list[np.ndarray]] = {split: [] for split in SPLITS}
    for split, tokens in zip(splits, tokenizer.encode_batch_arrays(kept), strict=True):
        array = np.empty(tokens.size + 1, dtype=dtype)
        array[:-1] = tokens
        array[-1] = tokenizer.eot_id
        out[split].append(array)
        counts[f"documents_{split}"] += 1
        counts[f"tokens_{split}"] += array.size
        counts["documents_longer_than_shard"] += array.size > shard_tokens
    return out, counts


@lru_cache(maxsize=4)
def worker_tokenizer(spec: str, vocab_dir: str | None) -> Tokenizer:
    """The tokenizer, loaded once per (Python worker) process."""
    return load_tokenizer(spec, vocab_dir)


def part_path(parts_dir: Path, partition: int, split: str) -> Path:
    return parts_dir / f"part-{partition:06d}-{split}.bin"


def write_parts(tokenizer: Tokenizer, batches: Iterator, final: dict[str, Path], attempt: int, val_fraction: float,
                dtype: str, shard_tokens: int) -> Counter:
    """Tokenize Arrow batches (id, text) into one part file per split (`final`), written atomically; the counts."""
    tmp = {split: path.with_name(f".{path.name}.{attempt}.tmp") for split, path in final.items()}
    files = {split: open(path, "wb") for split, path in tmp.items()}
    counts: Counter = Counter()
    try:
        for batch in batches:
            ids = batch.column(0).cast(pa.string()).to_pylist()
            texts = batch.column(1).cast(pa.binary()).to_pylist()  # invalid UTF-8 is counted, not raised
            arrays, batch_counts = tokenize_documents(tokenizer, ids, texts, val_fraction, dtype, shard_tokens)
            counts.update(batch_counts)
            for split, split_arrays in arrays.items():
                for array in split_arrays:
                    files[split].write(array.tobytes())
    finally:
        for f in files.values():
            f.close()
    for split in SPLITS:
        os.replace(tmp[split], final[split])
    return counts


def slice_writer(spec: str, vocab_dir: str | None, columns: list[str], val_fraction: float, shard_tokens: int,
                 dtype: str, parts_dir: str) -> Callable[[int, Iterator[Slice]], Iterator[str]]:
    """The mapPartitionsWithIndex function: read each slice of the partition (one) with pyarrow, `columns` =
    (id, text), and tokenize it into the partition's part files (`part_path`); yield its counts as JSON."""

    def write_slices(partition: int, pieces: Iterator[Slice]) -> Iterator[str]:
        from pyspark import TaskContext

        context = TaskContext.get()
        os.environ[RAYON_THREADS_ENV] = str(context.cpus())  # read when the pool starts: first use per worker
        tokenizer = worker_tokenizer(spec, vocab_dir)
        final = {split: part_path(Path(parts_dir), partition, split) for split in SPLITS}
        batches = (batch for piece in pieces for batch in read_slice(piece, columns))
        counts = write_parts(tokenizer, batches, final, context.attemptNumber(), val_fraction, dtype, shard_tokens)
        yield json.dumps(counts)

    return write_slices
