"""Quality scoring benchmark: the Spark scoring stage vs a bare fastText predict loop, on the same documents.

    .venv/bin/python -m benchmarks.quality [--corpus WORKDIR/DUMP/scrubbed] [--repeat 3]

Side by side in one run, documents per second of
1. a bare loop: the trained model's `predict` on every text (one process, one core), nothing written;
2. the per-document part alone (`score_part`: datatrove's filter, score histogram, examples, Parquet out) on one
   core;
3. the whole stage on Spark `local[2]` (Parquet in, scored Parquet + examples + stats.json out).
Ratios are printed against the bare loop (for Spark per core too). Without --corpus the documents are real
web text of ../shared/data (testkit.token_corpus), `--copies` times over, and the classifier is testkit's small one.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FINEFORGE_SHARED_DATA", ROOT.parent / "shared" / "data"))
SPARK_CORES = 2


def volume_corpus(source: Path, folder: Path, copies: int, parts: int) -> Path:
    """The documents of `source` `copies` times over (distinct ids), as `parts` part files of a stage folder."""
    import pyarrow.parquet as pq

    from fineforge.tasks.common.documents import PartWriter, parquet_files

    rows = [row for path in parquet_files([source]) for row in pq.read_table(path).to_pylist()]
    folder.mkdir(parents=True, exist_ok=True)
    copied = [{**row, "id": f"{row['id']}-{copy}"} for copy in range(copies) for row in rows]
    for part in range(parts):
        with PartWriter(folder / f"part-{part:05d}.parquet") as writer:
            for row in copied[part::parts]:
                writer.write(row)
    return folder


def _best_seconds(run, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, help="A document stage folder (default: real text of shared data).")
    parser.add_argument("--repeat", type=int, default=3, help="Runs of each; the best is reported.")
    parser.add_argument("--copies", type=int, default=20, help="Without --corpus: the real text this many times.")
    args = parser.parse_args()

    import pyarrow.parquet as pq

    from fineforge.tasks.common.documents import parquet_files
    from fineforge.tasks.common.spark import SparkConfig, spark_session
    from fineforge.tasks.common.stage import execute_stage
    from fineforge.tasks.filter.language_id import fasttext_model
    from fineforge.tasks.quality.config import MODEL_FILE, QualityScoreConfig
    from fineforge.tasks.quality.job import score_part, score_stages
    from fineforge.tasks.quality.scoring import positive_score
    from testkit.quality import train_small_classifier
    from testkit.token_corpus import DUMP

    work = Path(tempfile.mkdtemp(prefix="bench-quality-"))
    model_dir = train_small_classifier(SHARED, work)
    corpus = args.corpus or volume_corpus(work / DUMP / "scrubbed", work / "volume" / "scrubbed", args.copies,
                                          parts=2 * SPARK_CORES)
    files = parquet_files([corpus])
    texts = [text for path in files for text in pq.read_table(path, columns=["text"]).column("text").to_pylist()]
    model = fasttext_model(model_dir / MODEL_FILE)
    config = QualityScoreConfig(workdir=str(work), model=str(model_dir), input=[str(corpus)], mlflow=False)

    def bare_loop() -> None:
        for text in texts:
            positive_score(model, text)

    def per_document_part() -> None:
        for index, path in enumerate(files):
            score_part(str(path), work / f"part-{index:05d}.parquet", index, str(model_dir / MODEL_FILE),
                       config.threshold, config.examples)

    spark = spark_session(SparkConfig(master=f"local[{SPARK_CORES}]", ui=False))
    (stage,) = score_stages(config)

    def spark_stage() -> None:
        execute_stage(stage, work / "stage-runs" / str(time.perf_counter_ns()), spark)

    spark_stage()  # starts the Python workers and loads the model in them, as every later run finds them
    contenders = [("bare fastText predict loop (1 core)", bare_loop),
                  ("score_part, no Spark (1 core)", per_document_part),
                  (f"Spark stage local[{SPARK_CORES}]", spark_stage)]
    results = {name: len(texts) / _best_seconds(run, args.repeat) for name, run in contenders}
    print(f"{len(texts)} documents, {sum(map(len, texts)):,} characters, best of {args.repeat}")
    bare = next(iter(results.values()))
    for name, per_second in results.items():
        print(f"{name:40s} {per_second:10.0f} docs/s   {per_second / bare:5.2f}x bare")
    print(f"Spark stage per core: {results[f'Spark stage local[{SPARK_CORES}]'] / SPARK_CORES / bare:.2f}x bare")
    spark.stop()


if __name__ == "__main__":
    main()
