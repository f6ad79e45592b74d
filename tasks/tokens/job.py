"""The tokens stage on Spark: Parquet documents -> llm.c token shards under `<workdir>/tokens/<name>/`.

Every document becomes its tokens followed by the end-of-document token and goes to the train or the
validation split by a hash of its id. The input is cut into slices (`slices.py`: row ranges of the
Parquet files, of about equal text bytes); one Spark task per slice reads it with pyarrow, tokenizes it
(the tokenizer is loaded once per worker process) and writes its tokens per split to a part file. The
driver then concatenates the part files in slice order, i.e. the documents in input order, into shards
of exactly `shard_tokens` tokens (the last one shorter), as llm.c's shards are. Documents thus may span
two shards, which is how documents longer than a shard are kept (and counted). The part files go to the
stage's temporary folder, so on a cluster the work dir must be a file system every executor shares (as
the trainers that read the shards need anyway).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fineforge.model.shards import shard_entry, write_manifest, write_shard
from fineforge.model.tokenizer import Tokenizer
from fineforge.tasks.common.documents import parquet_files
from fineforge.tasks.common.remote_stage import run_in_work_dir
from fineforge.tasks.common.stage import STATS_FILE, StageOutput, execute_stage, file_identity
from fineforge.tasks.common.statistics import merge_counts
from fineforge.tasks.tokens.config import TOKENS_GROUP, TokenizeConfig, token_dtype
from fineforge.tasks.tokens.documents import EMPTY, INVALID_UTF8, SPLITS, part_path, slice_writer
from fineforge.tasks.tokens.slices import check_columns, plan_slices

log = logging.getLogger(__name__)

PARTS_DIR = "_parts"
# Slices per core: Spark hands the next slice to whichever core is free, so uneven documents even out.
SLICES_PER_CORE = 4


def tokenizer_identity(spec: str) -> str:
    """The spec, plus the file's sha256 for a trained tokenizer (retraining changes the shards)."""
    path = Path(spec)
    if path.is_file():
        return f"{spec}#{hashlib.sha256(path.read_bytes()).hexdigest()}"
    return spec


def corpus_fingerprints(inputs: list[str]) -> dict[str, str]:
    """The fingerprint of each input folder that is a stage's complete output (its stats.json): what the shards
    were made of, recorded in their manifest."""
    found = {}
    for folder in map(Path, inputs):
        if (folder / STATS_FILE).is_file():
            found[str(folder.resolve())] = json.loads((folder / STATS_FILE).read_text()).get("fingerprint", "")
    return found


def rechunk(parts: Iterable[np.ndarray], size: int) -> Iterator[np.ndarray]:
    """The concatenation of `parts`, cut into arrays of exactly `size` (the last one shorter)."""
    pending: list[np.ndarray] = []
    pending_size = 0
    for part in parts:
        pending.append(part)
        pending_size += part.size
        while pending_size >= size:
            joined = pending[0] if len(pending) == 1 else np.concatenate(pending)
            yield joined[:size]
            pending, pending_size = [joined[size:]], pending_size - size
    if pending_size:
        yield pending[0] if len(pending) == 1 else np.concatenate(pending)


def _assemble_shards(parts_dir: Path, output_dir: Path, partitions: list[int], dtype: str, shard_tokens: int):
    """Concatenate the part files in partition order into shards of `shard_tokens`; return the shard entries."""
    shards = []
    for split in SPLITS:
        parts = (np.fromfile(part_path(parts_dir, p, split), dtype=dtype) for p in partitions)
        for index, tokens in enumerate(rechunk(parts, shard_tokens)):
            name = f"{split}_{index:06d}.bin"
            sha = write_shard(output_dir / name, tokens, dtype)
            shards.append(shard_entry(name, split, tokens.size, sha))
            log.info("wrote %s (%d tokens)", name, tokens.size)
    return shards


def _tokenize_slices(spark, config: TokenizeConfig, parts_dir: Path, dtype: str) -> tuple[list[int], dict]:
    """Tokenize the documents, one Spark task per slice of the input, into part files; return the slices'
    partition numbers (in input order) and the merged counts."""
    files = parquet_files(config.input)
    columns = [config.id_column, config.text_column]
    check_columns(files, columns)
    wanted = config.min_partitions or spark.sparkContext.defaultParallelism * SLICES_PER_CORE
    slices = plan_slices(files, config.text_column, wanted)
    if not slices:
        return [], {}
    writer = slice_writer(config.tokenizer, config.vocab_dir, columns, config.val_fraction, config.shard_tokens,
                          dtype, str(parts_dir))
    counts = spark.sparkContext.parallelize(slices, len(slices)).mapPartitionsWithIndex(writer).collect()
    log.info("tokenized %d slices of %d files", len(slices), len(files))
    return list(range(len(slices))), merge_counts(json.loads(c) for c in counts)


def write_token_shards(spark, config: TokenizeConfig, output_dir: Path, tokenizer: Tokenizer | None = None) -> dict:
    """The Spark job: tokenize the documents of `config.input` into shards + manifest.json in `output_dir`."""
    started = time.time()
    tokenizer = tokenizer or config.load_tokenizer()
    dtype = token_dtype(tokenizer.vocab_size, config.dtype)
    if not parquet_files(config.input):
        raise FileNotFoundError(f"no Parquet files in {config.input}")
    parts_dir = output_dir / PARTS_DIR
    parts_dir.mkdir(parents=True)
    partitions, counts = _tokenize_slices(spark, config, parts_dir, dtype)
    tokenized = time.time()
    shards = _assemble_shards(parts_dir, output_dir, partitions, dtype, config.shard_tokens)
    shutil.rmtree(parts_dir)

    manifest = write_manifest(
        output_dir, tokenizer, dtype, shards, shard_tokens=config.shard_tokens, val_fraction=config.val_fraction,
        documents={split: counts.get(f"documents_{split}", 0) for split in SPLITS},
        corpus=corpus_fingerprints(config.input),
    )  # fmt: skip

    tokens = sum(manifest["tokens"].values())
    log.info("tokenized %d documents into %d tokens, %d shards (%.1fs)", counts.get("documents_in", 0), tokens,
             len(shards), time.time() - started)
    return {
        "documents_in": counts.get("documents_in", 0),
        "documents_out": sum(manifest["documents"].values()),
        "dropped": {reason: counts.get(f"dropped_{reason}", 0) for reason in (EMPTY, INVALID_UTF8)},
        "documents_longer_than_shard": counts.get("documents_longer_than_shard", 0),
        "tokens": tokens,
        **{f"tokens_{split}": manifest["tokens"].get(split, 0) for split in SPLITS},
        "shards": len(shards),
        "bytes": counts.get("bytes", 0),
        "bytes_per_token": round(counts.get("bytes", 0) / tokens, 4) if tokens else 0.0,
        "tokenize_seconds": round(tokenized - started, 3),
        "tokens_per_second": round(tokens / max(tokenized - started, 1e-9), 1),
        "tokenizer": tokenizer.name,
        "dtype": dtype,
        "corpus": manifest["corpus"],
    }


@dataclass(frozen=True)
class TokensStage:
    """`<workdir>/tokens/<name>/`: the train/val token shards of the documents of `config.input`."""

    config: TokenizeConfig
    group: str = TOKENS_GROUP

    @property
    def name(self) -> str:
        return self.config.name

    def fingerprint_parts(self) -> list[Any]:
        decisive = {"val_fraction", "shard_tokens", "dtype", "id_column", "text_column"}
        return [file_identity(parquet_files(self.config.input)), tokenizer_identity(self.config.tokenizer),
                self.config.model_dump(mode="json", include=decisive)]

    def run(self, spark, output_dir: Path) -> dict[str, Any]:
        return write_token_shards(spark, self.config, output_dir)


def tokenize_corpus(spark, config: TokenizeConfig) -> StageOutput:
    """The tokens stage at `<workdir>/tokens/<name>/` on `spark`, through the stage contract (without Prefect)."""
    stage = TokensStage(config)
    return run_in_work_dir(lambda workdir: execute_stage(stage, workdir, spark), stage, config.workdir)
