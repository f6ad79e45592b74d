"""What the one document writer costs the dedup stage: Spark's own Parquet writer (what dedup used before) vs
`write_partitions` (every partition through `PartWriter`, which enforces DOCUMENT_SCHEMA), side by side on the
same cached DataFrame of real-sentence documents, in one Spark session on 2 cores.
Run: `python -m benchmarks.document_writer --documents 100000`.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from testkit.dedup_corpus import sentence_documents, sentences, write_documents

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CORES = 2
PARTITIONS = 4  # as the dedup stage's survivors after its shuffles on 2 cores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--documents", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from fineforge.tasks.common.spark import SparkConfig, spark_session
    from fineforge.tasks.common.spark_jobs import write_partitions

    scratch = Path(tempfile.mkdtemp(prefix="fineforge-bench-writer-"))
    texts = list(sentence_documents(sentences(SHARED_DATA), args.documents, seed=0))
    write_documents(texts, scratch / "input", rows_per_file=args.documents // PARTITIONS + 1)
    spark = spark_session(SparkConfig(master=f"local[{CORES}]", app_name="bench-document-writer"))
    frame = spark.read.parquet(str(scratch / "input")).repartition(PARTITIONS).cache()
    megabytes = sum(len(text.encode()) for text in texts) / 1e6
    print(f"{frame.count()} documents, {megabytes:.1f} MB of text, {PARTITIONS} partitions")

    writers = {
        "Spark's Parquet writer": lambda out: frame.write.option("compression", "zstd").parquet(str(out)),
        "write_partitions (PartWriter)": lambda out: write_partitions(frame, out),
    }
    best = dict.fromkeys(writers, float("inf"))
    for repeat in range(args.repeats + 1):  # the first round warms the Python workers up
        for label, write in writers.items():
            out = scratch / f"out-{repeat}-{len(label)}"
            started = time.perf_counter()
            write(out)
            if repeat:
                best[label] = min(best[label], time.perf_counter() - started)
            shutil.rmtree(out)
    spark.stop()
    shutil.rmtree(scratch)
    baseline = best["Spark's Parquet writer"]
    for label, seconds in best.items():
        print(f"{label:32s} {seconds:6.2f} s  {megabytes / seconds:6.1f} MB/s  ratio {seconds / baseline:.2f}")


if __name__ == "__main__":
    main()
