"""The deduplication stage on Spark: URL, exact and MinHash dedup (FineWeb's configuration), like datatrove.

Documents are read from the previous stage's Parquet, each gets a key (file ordinal, row in file) that
orders them as datatrove's reader does. One pass over the text computes every per-document key (MinHash
signature with datatrove's own code, normalised-text hash, normalised URL); the steps then run, in order,
on the documents the earlier steps kept:

- empty: documents without text are dropped (datatrove's readers skip them);
- url: one document per normalised URL, the most recent crawl (then the latest dump, then the first read);
- exact: one document per normalised text, the first read;
- minhash: documents sharing all hashes of a band are duplicate pairs (the adjacent pairs of each band
  group, as datatrove writes them); clusters are the connected components of those pairs (computed on
  Spark), and in each cluster the document datatrove's MinhashDedupCluster keeps survives.

Finally the documents are read again and the removed ones left out. Nothing proportional to the number of
documents reaches the driver: it collects counts, input file names and the cluster-size histogram.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import unquote, urlparse

import pandas as pd
from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from fineforge.tasks.common.spark_jobs import write_partitions
from fineforge.tasks.common.stage import ConfiguredStage, StageOutput
from fineforge.tasks.dedup.config import DEDUPLICATED, DedupConfig
from fineforge.tasks.dedup.connected_components import connected_components
from fineforge.tasks.dedup.keys import normalised_text_hash, normalised_url
from fineforge.tasks.dedup.minhash import MinhashSigner, cluster_survivor

log = logging.getLogger(__name__)

KEY = "_doc_key"
SCOPE = "_scope"
_FILE = "_file"
_FILE_ORDINAL = "_file_ordinal"
# doc key = file ordinal << ROW_BITS | row index in the file
ROW_BITS = 32
PARQUET_GLOB = "*.parquet"
# Step name -> drop reason in the stats. Empty documents go first: datatrove's readers skip them.
DROP_REASONS = {
    "empty": "empty_document",
    "url": "url_duplicate",
    "exact": "exact_duplicate",
    "minhash": "minhash_duplicate",
}

_FEATURES_SCHEMA = T.StructType(
    [
        T.StructField(KEY, T.LongType(), False),
        T.StructField(SCOPE, T.StringType(), False),
        T.StructField("url_key", T.StringType()),
        T.StructField("crawl_date", T.StringType()),
        T.StructField("dump", T.StringType()),
        T.StructField("text_chars", T.LongType(), False),
        T.StructField("text_hash", T.BinaryType()),
        T.StructField("bands", T.ArrayType(T.BinaryType())),
    ]
)


@cache
def _signer(config_json: str) -> MinhashSigner:
    config = DedupConfig.model_validate_json(config_json)
    return MinhashSigner(config.minhash_config(), language=config.language)


def _document_features(batches, config_json: str):
    """mapInPandas: the per-document keys of every step, computed in one pass over the text."""
    config = DedupConfig.model_validate_json(config_json)
    norm_config = config.minhash_config().norm_config
    signer = _signer(config_json) if config.minhash else None
    for batch in batches:
        texts = batch["text"].fillna("")
        yield pd.DataFrame(
            {
                KEY: batch[KEY],
                SCOPE: batch[SCOPE],
                "url_key": [normalised_url(url) for url in batch["url"]] if config.url else None,
                "crawl_date": batch["crawl_date"],
                "dump": batch["dump"],
                "text_chars": texts.str.len(),
                "text_hash": [normalised_text_hash(t, norm_config) for t in texts] if config.exact else None,
                "bands": [signer.band_keys(t) for t in texts] if signer else None,
            }
        )


def _checkpoint(frame: DataFrame) -> DataFrame:
    return frame.localCheckpoint(eager=True, storageLevel=StorageLevel.DISK_ONLY)


def read_documents(spark: SparkSession, input_dirs: list[Path], scope: str) -> tuple[DataFrame, list[str]]:
    """The documents of `input_dirs` with a key ordering them as datatrove reads them, and their scope; and the
    input files in key order (a key's file ordinal is its position in that list)."""
    missing = [str(path) for path in input_dirs if not Path(path).is_dir()]
    if not input_dirs or missing:
        raise FileNotFoundError(f"dedup input folders missing: {missing or 'none given'}")
    docs = spark.read.option("pathGlobFilter", PARQUET_GLOB).parquet(*[str(path) for path in input_dirs])
    for column in ("text", "url", "crawl_date", "dump"):
        if column not in docs.columns:
            raise ValueError(f"dedup input lacks the column {column!r} (has {docs.columns})")
    columns = docs.columns
    # one row per input file, not per document, reaches the driver
    files = sorted(row[_FILE] for row in docs.select(F.col("_metadata.file_path").alias(_FILE)).distinct().collect())
    ordinals = spark.createDataFrame(list(enumerate(files)), schema=f"{_FILE_ORDINAL} int, {_FILE} string")
    keyed = docs.select(*columns, F.col("_metadata.file_path").alias(_FILE), F.col("_metadata.row_index").alias("_row"))
    scope_column = F.coalesce(F.col("dump"), F.lit("")) if scope == "dump" else F.lit("")
    documents = keyed.join(F.broadcast(ordinals), _FILE).select(
        *columns,
        (F.shiftleft(F.col(_FILE_ORDINAL).cast("long"), ROW_BITS) + F.col("_row")).alias(KEY),
        scope_column.alias(SCOPE),
    )
    return documents, files


def _written_only(files: list[str], write_files: list[str] | None):
    """A filter keeping the documents of `write_files` (all when None): key frames -> key frames."""
    if write_files is None:
        return lambda frame: frame
    wanted = {str(Path(path).resolve()) for path in write_files}
    ordinals = [i for i, uri in enumerate(files) if unquote(urlparse(uri).path) in wanted]
    return lambda frame: frame.where(F.shiftright(F.col(KEY), ROW_BITS).isin(ordinals))


def _first_per_group(features: DataFrame, group: list[str], order: list) -> DataFrame:
    """Keys of the documents that are not first of their group in `order`."""
    rank = F.row_number().over(Window.partitionBy(*group).orderBy(*order))
    return features.select(KEY, rank.alias("_rank")).where(F.col("_rank") > 1).select(KEY)


def _cluster_removals(batches):
    """mapInPandas over pairs partitioned by cluster: every member but the one datatrove keeps, per cluster."""
    pairs = pd.concat(list(batches), ignore_index=True)
    if pairs.empty:
        return
    pairs = pairs.sort_values(["component", "bucket", "band", "a", "b"])
    rows = zip(pairs["component"], pairs["bucket"], pairs["band"], pairs["a"], pairs["b"], strict=True)
    removed: list[int] = []
    for _component, cluster in itertools.groupby(rows, key=lambda row: row[0]):
        kept, members = cluster_survivor(row[1:] for row in cluster)
        removed.extend(int(member) for member in members if member != kept)
    yield pd.DataFrame({KEY: removed}, dtype="int64")


def _duplicate_pairs(features: DataFrame) -> DataFrame:
    """(bucket, band, a, b): the adjacent documents of every band shared by several, as datatrove pairs them.

    Most shared bands have two documents, whose pair is (smallest key, largest key): one hash aggregation
    finds them. Only the rows of bands shared by three or more are collected and sorted into their pairs.
    """
    band = [SCOPE, "bucket", "band"]
    bands = features.where(F.col("bands").isNotNull()).select(KEY, SCOPE, F.posexplode("bands").alias("bucket", "band"))
    shared = _checkpoint(
        bands.groupBy(*band)
        .agg(F.count("*").alias("size"), F.min(KEY).alias("a"), F.max(KEY).alias("b"))
        .where(F.col("size") > 1)
    )
    pairs_of_two = shared.where(F.col("size") == 2).select("bucket", "band", "a", "b")
    larger = bands.join(shared.where(F.col("size") > 2).select(*band), band, "left_semi")
    groups = larger.groupBy(*band).agg(F.array_sort(F.collect_list(KEY)).alias("docs"))
    adjacent = "transform(sequence(0, size(docs) - 2), i -> named_struct('a', docs[i], 'b', docs[i + 1]))"
    pairs_of_more = groups.select("bucket", "band", F.explode(F.expr(adjacent)).alias("pair")).select(
        "bucket", "band", "pair.a", "pair.b"
    )
    return pairs_of_two.unionByName(pairs_of_more)


def minhash_duplicates(features: DataFrame) -> tuple[DataFrame, dict]:
    """(keys of MinHash duplicates to remove, statistics) among `features` with signatures."""
    pairs = _checkpoint(_duplicate_pairs(features))
    components = connected_components(pairs, "a", "b")
    labels = _checkpoint(components.labels)
    sizes = labels.groupBy("component").agg(F.count("*").alias("size"))
    histogram = {int(row["size"]): int(row["count"]) for row in sizes.groupBy("size").count().collect()}
    removed = _checkpoint(
        pairs.join(labels.withColumnRenamed("node", "a"), "a")
        .repartition("component")
        .mapInPandas(_cluster_removals, schema=f"{KEY} long")
    )
    stats = {
        "candidate_pairs": pairs.count(),
        "clusters": sum(histogram.values()),
        "cluster_size_histogram": dict(sorted(histogram.items())),
        "connected_components_iterations": components.rounds,
    }
    return removed, stats


def _in_input_order(kept: DataFrame, files: int) -> DataFrame:
    """The survivors laid out as their input: each input file's documents in one partition, in the file's order.
    A join's output order depends on which map output arrives first, so without this the same input gave parts
    in another order on a cluster (and token shards in another order after them)."""
    return kept.repartition(max(files, 1), F.shiftright(KEY, ROW_BITS)).sortWithinPartitions(KEY)


def _step(name: str, documents_in: int, dropped: int) -> dict:
    return {"name": name, "documents_in": documents_in, "documents_out": documents_in - dropped, "dropped": dropped}


def deduplicate_parquet(spark: SparkSession, input_dirs: list[Path], config: DedupConfig, output_dir: Path,
                        write_files: list[str] | None = None) -> dict:
    """Deduplicate the documents of `input_dirs` into Parquet in `output_dir` (the document schema); return stats.

    With `write_files` (part files of `input_dirs`), only their documents are written and counted: they are
    deduplicated against all the others (an increment appended to an earlier output), which stay as they are.
    """
    docs, files = read_documents(spark, input_dirs, config.scope)
    written_only = _written_only(files, write_files)
    columns = [c for c in docs.columns if c not in (KEY, SCOPE)]
    features = _checkpoint(
        docs.select(KEY, SCOPE, "text", "url", "crawl_date", "dump").mapInPandas(
            lambda batches: _document_features(batches, config.model_dump_json()), schema=_FEATURES_SCHEMA
        )
    )
    counts = written_only(features).agg(
        F.count("*").alias("documents_in"),
        F.sum((F.col("text_chars") == 0).cast("long")).alias("empty"),
        F.sum((F.col("text_chars") > config.long_document_chars).cast("long")).alias("long_documents"),
        F.sum((F.col("bands").isNull()).cast("long")).alias("documents_without_shingles"),
    ).first()
    documents_in, empty = int(counts["documents_in"]), int(counts["empty"] or 0)
    stats: dict = {
        "documents_in": documents_in,
        "long_documents": int(counts["long_documents"] or 0),
        "dropped": dict.fromkeys(DROP_REASONS.values(), 0) | {DROP_REASONS["empty"]: empty},
        "clusters": 0,
        "cluster_size_histogram": {},
        "connected_components_iterations": 0,
        "steps": [_step("empty", documents_in, empty)],
    }
    if config.minhash:
        stats["documents_without_shingles"] = int(counts["documents_without_shingles"] or 0)

    # empty documents need no join: they are filtered out here and when the documents are written
    survivors, removed_parts, remaining = features.where(F.col("text_chars") > 0), [], documents_in - empty
    steps = [name for name in ("url", "exact", "minhash") if getattr(config, name)]
    for position, name in enumerate(steps):
        step: dict = {}
        if name == "url":
            removed = _first_per_group(
                survivors.where(F.col("url_key").isNotNull()),
                [SCOPE, "url_key"],
                [F.col("crawl_date").desc_nulls_last(), F.col("dump").desc_nulls_last(), KEY],
            )
        elif name == "exact":
            removed = _first_per_group(survivors, [SCOPE, "text_hash"], [KEY])
        else:
            removed, step = minhash_duplicates(survivors)
            stats.update({key: step[key] for key in ("clusters", "cluster_size_histogram")})
            stats["connected_components_iterations"] = step["connected_components_iterations"]
        removed = _checkpoint(removed)
        dropped = written_only(removed).count()
        stats["dropped"][DROP_REASONS[name]] = dropped
        details = {key: value for key, value in step.items() if key != "cluster_size_histogram"}
        stats["steps"].append(_step(name, remaining, dropped) | details)
        log.info("dedup step %s: %d of %d documents removed", name, dropped, remaining)
        remaining -= dropped
        removed_parts.append(removed)
        if position + 1 < len(steps):
            survivors = _checkpoint(survivors.join(removed, KEY, "left_anti"))

    kept = written_only(docs).where(F.length(F.coalesce("text", F.lit(""))) > 0)
    for removed in removed_parts:
        kept = kept.join(removed, KEY, "left_anti")
    written = write_partitions(_in_input_order(kept, len(write_files or files)).select(*columns), output_dir)
    if written["documents_out"] != remaining:
        raise RuntimeError(f"dedup wrote {written['documents_out']} documents, expected {remaining}")
    return stats | {"documents_out": remaining, "bytes_out": written["bytes_out"]}


@dataclass(frozen=True)
class DedupStage(ConfiguredStage):
    """`<workdir>/<group>/deduplicated/`: the documents of `inputs` (one dump's, or all dumps') without duplicates."""

    config: DedupConfig
    inputs: list[StageOutput]
    name: ClassVar[str] = DEDUPLICATED
    one_part_per_input: ClassVar[bool] = False  # a part holds the survivors of one or more input files

    def run(self, spark, output_dir: Path) -> dict[str, Any]:
        """Deduplicate all inputs; with `only`, write those files' survivors, compared against all the others."""
        inputs = [output.path for output in self.inputs]
        write_files = list(self.only) if self.only is not None else None
        return deduplicate_parquet(spark, inputs, self.config, output_dir, write_files)
