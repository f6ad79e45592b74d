"""The tokenize stage: Parquet documents -> llm.c token shards under `<workdir>/tokens/<name>/`, on Spark.

Every document becomes its tokens followed by the end-of-document token and goes to the train or the
validation split by a hash of its id. Spark partitions tokenize in parallel (the tokenizer is loaded once
per worker process) and each writes its tokens per split to a part file; the driver then concatenates
the part files in partition order into shards of exactly `shard_tokens` tokens (the last one shorter),
as llm.c's shards are. Documents thus may span two shards, which is how documents longer than a shard
are kept (and counted). The part files go to the stage's temporary folder, so on a cluster the work
dir must be a file system every executor shares (as the trainers that read the shards need anyway).
Also: training a BPE tokenizer on a Spark sample of the corpus.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Literal

import numpy as np
from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, Field, field_validator

from fineforge.model.shards import (
    MANIFEST,
    ShardError,
    read_shard,
    shard_dtype,
    shard_entry,
    write_manifest,
    write_shard,
)
from fineforge.model.tokenizer import BPETrainingConfig, Tokenizer, load_tokenizer, train_bpe
from fineforge.tasks.common.spark import SparkConfig, SparkProgress, spark_session
from fineforge.tasks.common.stage import file_identity, merge_counts, run_stage
from fineforge.tasks.tokens.documents import EMPTY, INVALID_UTF8, SPLITS, part_path, partition_writer, validation_split

log = logging.getLogger(__name__)

TOKENS_STAGE = "tokens"
PARTS_DIR = "_parts"
DEFAULT_SHARD_TOKENS = 100_000_000


class TokenizeConfig(BaseModel):
    """One tokenize run: which documents, which tokenizer, how to split and shard."""

    input: list[str] = Field(..., min_length=1, description="Parquet folders (or files) of documents.")
    workdir: str = Field("work", description="Output root; shards go to <workdir>/tokens/<name>/.")
    name: str = Field("corpus", pattern=r"^[\w.-]+$", description="Name of this shard set.")
    tokenizer: str = Field("gpt2", description="bytes, gpt2, cl100k_base, o200k_base, or a trained .json file.")
    vocab_dir: str | None = Field(None, description="Folder of published vocabulary files ($FINEFORGE_TOKENIZER_DIR).")
    val_fraction: float = Field(0.01, ge=0.0, le=1.0, description="Share of documents (by id hash) for validation.")
    shard_tokens: int = Field(DEFAULT_SHARD_TOKENS, gt=0, description="Tokens per shard (the last one shorter).")
    dtype: Literal["auto", "uint16", "uint32"] = Field("auto", description="Token dtype; auto = smallest fitting.")
    id_column: str = "id"
    text_column: str = "text"
    min_partitions: int | None = Field(None, gt=0, description="Repartition to at least this many (default: cores).")
    spark: SparkConfig = Field(default_factory=SparkConfig)

    @field_validator("input")
    @classmethod
    def _inputs_exist(cls, value: list[str]) -> list[str]:
        missing = [p for p in value if not Path(p).exists()]
        if missing:
            raise ValueError(f"input not found: {', '.join(missing)}")
        return value


def token_dtype(vocab_size: int, requested: str = "auto") -> str:
    """The shard dtype for a vocabulary; a clear error when the requested one cannot hold every id."""
    needed = shard_dtype(vocab_size)
    if requested == "auto":
        return needed
    if vocab_size > np.iinfo(requested).max + 1:
        raise ShardError(f"a vocabulary of {vocab_size} tokens does not fit {requested} shards (needs {needed})")
    return requested


# ---- Spark job ---------------------------------------------------------------------------------------


def parquet_files(inputs: Iterable[str]) -> list[Path]:
    """Every Parquet file of the inputs (folders searched recursively), sorted."""
    files: list[Path] = []
    for item in inputs:
        path = Path(item)
        files += [path] if path.is_file() else sorted(p for p in path.rglob("*.parquet") if not p.name.startswith("."))
    return files


def tokenizer_identity(spec: str) -> str:
    """The spec, plus the file's sha256 for a trained tokenizer (retraining changes the shards)."""
    path = Path(spec)
    if path.is_file():
        return f"{spec}#{hashlib.sha256(path.read_bytes()).hexdigest()}"
    return spec


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


def write_token_shards(spark, config: TokenizeConfig, output_dir: Path, tokenizer: Tokenizer | None = None) -> dict:
    """The Spark job: tokenize the documents of `config.input` into shards + manifest.json in `output_dir`."""
    started = time.time()
    tokenizer = tokenizer or load_tokenizer(config.tokenizer, config.vocab_dir)
    dtype = token_dtype(tokenizer.vocab_size, config.dtype)
    files = parquet_files(config.input)
    if not files:
        raise FileNotFoundError(f"no Parquet files in {config.input}")
    output_dir.mkdir(parents=True, exist_ok=True)
    parts_dir = output_dir / PARTS_DIR
    parts_dir.mkdir()

    from pyspark.sql import functions as F

    frame = spark.read.parquet(*[str(f) for f in files])
    for column in (config.id_column, config.text_column):
        if column not in frame.columns:
            raise ValueError(f"input has no column {column!r} (columns: {frame.columns})")
    frame = frame.select(F.col(config.id_column).cast("string"), F.col(config.text_column).cast("binary"))
    wanted = config.min_partitions or spark.sparkContext.defaultParallelism
    if frame.rdd.getNumPartitions() < wanted:
        frame = frame.repartition(wanted)
    writer = partition_writer(config.tokenizer, config.vocab_dir, config.val_fraction, config.shard_tokens, dtype,
                              str(parts_dir))
    rows = frame.mapInArrow(writer, "partition long, counts string").collect()
    tokenized = time.time()
    partitions = sorted(row["partition"] for row in rows)
    counts = merge_counts(json.loads(row["counts"]) for row in rows)
    shards = _assemble_shards(parts_dir, output_dir, partitions, dtype, config.shard_tokens)
    shutil.rmtree(parts_dir)

    manifest = write_manifest(
        output_dir, tokenizer, dtype, shards, shard_tokens=config.shard_tokens, val_fraction=config.val_fraction,
        documents={split: counts.get(f"documents_{split}", 0) for split in SPLITS},
    )  # fmt: skip

    tokens = sum(manifest["tokens"].values())
    dropped = {reason: counts.get(f"dropped_{reason}", 0) for reason in (EMPTY, INVALID_UTF8)}
    elapsed = time.time() - started
    log.info("tokenized %d documents into %d tokens, %d shards (%.1fs)", counts.get("documents_in", 0), tokens,
             len(shards), elapsed)
    return {
        "documents_in": counts.get("documents_in", 0),
        "documents_out": sum(manifest["documents"].values()),
        "dropped": dropped,
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
    }


def tokenize_corpus(spark, config: TokenizeConfig) -> dict:
    """Run the tokenize stage at `<workdir>/tokens/<name>/`: atomic, skipped when complete for the same input."""
    tokenizer = load_tokenizer(config.tokenizer, config.vocab_dir)
    token_dtype(tokenizer.vocab_size, config.dtype)  # fail before any work
    parts = [
        file_identity(parquet_files(config.input)),
        tokenizer_identity(config.tokenizer),
        config.model_dump(mode="json", include={"val_fraction", "shard_tokens", "dtype", "id_column", "text_column"}),
    ]
    return run_stage(Path(config.workdir), TOKENS_STAGE, config.name, parts,
                     lambda out: write_token_shards(spark, config, out, tokenizer))


@task(name="tokenize", task_run_name="tokenize-{config.name}", cache_policy=NO_CACHE)
def tokenize_stage(config: TokenizeConfig) -> dict:
    """Prefect task: the tokenize stage on the configured Spark session."""
    spark = spark_session(config.spark)
    with SparkProgress(spark, f"{TOKENS_STAGE}/{config.name}"):
        return tokenize_corpus(spark, config)


# ---- tokenizer training ------------------------------------------------------------------------------


def sample_texts(spark, inputs: list[str], sample_docs: int | None = None, fraction: float | None = None,
                 text_column: str = "text", id_column: str = "id", val_fraction: float = 0.0,
                 seed: int = 0) -> Iterator[str]:
    """Texts of a random sample of the corpus's training documents (validation-split ids left out)."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import BooleanType

    files = parquet_files(inputs)
    if not files:
        raise FileNotFoundError(f"no Parquet files in {inputs}")
    frame = spark.read.parquet(*[str(f) for f in files])
    if val_fraction > 0:
        is_train = F.udf(lambda doc_id: validation_split(doc_id, val_fraction) == "train", BooleanType())
        frame = frame.where(is_train(F.col(id_column).cast("string")))
    frame = frame.select(text_column).where(F.length(text_column) > 0)
    if fraction is not None:
        frame = frame.sample(fraction=fraction, seed=seed)
    if sample_docs is not None:
        frame = frame.orderBy(F.rand(seed)).limit(sample_docs)
    for row in frame.toLocalIterator():
        yield row[0]


def train_bpe_tokenizer(spark, parquet_dirs: list[str], vocab_size: int, output_path: str | Path,
                        sample_docs: int | None = None, fraction: float | None = None, val_fraction: float = 0.0,
                        seed: int = 0, min_frequency: int = 2) -> Tokenizer:
    """Train a byte-level BPE on a Spark sample of the Parquet corpus; save it as JSON at `output_path`."""
    texts = sample_texts(spark, parquet_dirs, sample_docs, fraction, val_fraction=val_fraction, seed=seed)
    return train_bpe(texts, output_path, BPETrainingConfig(vocab_size=vocab_size, min_frequency=min_frequency))


# ---- inspection --------------------------------------------------------------------------------------


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

