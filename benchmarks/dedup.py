"""Scale benchmark: fineforge's Spark MinHash dedup vs datatrove's four-stage MinHash, same input, 2 cores.

The input is N documents of real web sentences (lingua-sentences, 10 languages) with a share of planted
near-duplicates, as Parquet. Each side runs in its own process tree; wall time and the peak resident memory
of that tree (sampled from /proc: driver, JVM, Python workers) are reported, with the ratio.
Run: `python -m benchmarks.dedup --documents 1000000 --workdir /tmp/dedup-bench`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

from testkit.dedup_corpus import edit_words, sentence_documents, sentences, write_documents

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CORES = 2
NEAR_DUPLICATE_SHARE = 0.05  # documents that are edited copies of another
EDITED_WORDS = 0.01
FILES_PER_CORE = 4  # input Parquet files: an even share for each of the 2 tasks / Spark cores
SHUFFLE_PARTITIONS = 16
DEFAULT_SENTENCES_PER_DOC = (2, 12)
SAMPLE_SECONDS = 0.2
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")


def build_input(
    shared_data: Path, documents: int, folder: Path, sentences_per_doc: tuple[int, int], seed: int = 0
) -> None:
    """Real-sentence documents, NEAR_DUPLICATE_SHARE of them edited copies of earlier ones."""
    rng = random.Random(seed)
    pools = sentences(shared_data)
    vocabulary = [word for line in pools[0][:500] for word in line.split()]
    texts: list[str] = []
    for text in sentence_documents(pools, documents, seed, sentences_per_doc):
        if texts and rng.random() < NEAR_DUPLICATE_SHARE:
            text = edit_words(rng.choice(texts), EDITED_WORDS, rng, vocabulary)
        texts.append(text)
    write_documents(texts, folder, rows_per_file=math.ceil(documents / (FILES_PER_CORE * CORES)))
    shape = {
        "words_per_doc": round(sum(len(text.split()) for text in texts) / documents, 1),
        "chars_per_doc": round(sum(len(text) for text in texts) / documents, 1),
    }
    shape_file(folder).write_text(json.dumps(shape))


def shape_file(folder: Path) -> Path:
    """Where `build_input` records the words and characters per document of `folder` (written last)."""
    return folder.with_name(f"{folder.name}.json")


def _tree_rss(root: int) -> dict[str, int]:
    """Resident bytes of `root` and its descendants, by kind (java, python, other)."""
    children: dict[int, list[int]] = {}
    names: dict[int, str] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            statm = Path(f"/proc/{entry}/statm").read_text().split()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        pid = int(entry)
        children.setdefault(ppid, []).append(pid)
        names[pid], rss[pid] = name, int(statm[1]) * PAGE_BYTES
    totals = {"java": 0, "python": 0, "other": 0}
    stack = [root]
    while stack:
        pid = stack.pop()
        stack.extend(children.get(pid, []))
        name = names.get(pid, "")
        kind = "java" if name.startswith("java") else "python" if name.startswith("python") else "other"
        totals[kind] += rss.get(pid, 0)
    return totals


def measure(command: list[str]) -> dict:
    """Run `command`; its wall time, peak tree RSS (total and per kind) and its JSON result (last line)."""
    started = time.time()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    peaks = {"total": 0, "java": 0, "python": 0}
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            usage = _tree_rss(process.pid)
            peaks["total"] = max(peaks["total"], sum(usage.values()))
            peaks["java"] = max(peaks["java"], usage["java"])
            peaks["python"] = max(peaks["python"], usage["python"])
            stop.wait(SAMPLE_SECONDS)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output, _ = process.communicate()
    stop.set()
    sampler.join()
    if process.returncode:
        raise RuntimeError(f"{command} failed with exit status {process.returncode}")
    return {
        "seconds": round(time.time() - started, 1),
        "peak_rss_mib": {k: round(v / 2**20) for k, v in peaks.items()},
        "result": json.loads(output.strip().splitlines()[-1]),
    }


def run_fineforge(input_dir: Path, work: Path) -> dict:
    from fineforge.tasks.common.spark import SparkConfig, spark_session
    from fineforge.tasks.dedup.config import DedupConfig
    from fineforge.tasks.dedup.job import deduplicate_parquet

    spark = spark_session(
        SparkConfig(
            master=f"local[{CORES}]",
            app_name="dedup-benchmark",
            extra_conf={"spark.sql.shuffle.partitions": str(SHUFFLE_PARTITIONS)},
        )
    )
    stats = deduplicate_parquet(spark, [input_dir], DedupConfig(), work / "output")
    spark.stop()
    return {key: stats[key] for key in ("documents_in", "documents_out", "dropped", "clusters")} | {
        "connected_components_iterations": stats["connected_components_iterations"],
        "candidate_pairs": stats["steps"][-1]["candidate_pairs"],
    }


def run_datatrove(input_dir: Path, work: Path) -> dict:
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup.minhash import (
        MinhashDedupBuckets,
        MinhashDedupCluster,
        MinhashDedupFilter,
        MinhashDedupSignature,
    )
    from datatrove.pipeline.readers import ParquetReader
    from datatrove.pipeline.writers import ParquetWriter

    from fineforge.tasks.dedup.config import DedupConfig

    config = DedupConfig().minhash_config()
    stages = [
        ([ParquetReader(str(input_dir)), MinhashDedupSignature(str(work / "sigs"), config=config)], CORES),
        ([MinhashDedupBuckets(str(work / "sigs"), str(work / "buckets"), config=config)], config.num_buckets),
        ([MinhashDedupCluster(str(work / "buckets"), str(work / "remove"), config=config)], 1),
        (
            [
                ParquetReader(str(input_dir)),
                MinhashDedupFilter(str(work / "remove")),
                ParquetWriter(str(work / "output")),
            ],
            CORES,
        ),
    ]
    for index, (pipeline, tasks) in enumerate(stages):
        LocalPipelineExecutor(
            pipeline, tasks=tasks, workers=min(tasks, CORES), logging_dir=str(work / "logs" / str(index))
        ).run()
    removed = sum((work / "remove").joinpath(name).stat().st_size // 4 for name in os.listdir(work / "remove"))
    return {"minhash_duplicate": removed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=1_000_000)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/fineforge-dedup-bench"))
    parser.add_argument("--shared-data", type=Path, default=SHARED_DATA)
    parser.add_argument(
        "--sentences",
        type=int,
        nargs=2,
        default=DEFAULT_SENTENCES_PER_DOC,
        metavar=("MIN", "MAX"),
        help="real sentences per document (default %(default)s: ~130 words; FineWeb averages ~500)",
    )
    parser.add_argument("--side", choices=["both", "fineforge", "datatrove"], default="both")
    parser.add_argument("--run", choices=["fineforge", "datatrove"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    low, high = args.sentences
    input_dir = args.workdir / f"input-{args.documents}-s{low}-{high}"
    if args.run:
        work = args.workdir / args.run
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        result = run_fineforge(input_dir, work) if args.run == "fineforge" else run_datatrove(input_dir, work)
        print(json.dumps(result))
        return
    if not shape_file(input_dir).is_file():
        started = time.time()
        build_input(args.shared_data, args.documents, input_dir, (low, high))
        print(f"built {args.documents} documents in {time.time() - started:.0f}s: {input_dir}", flush=True)
    sides = ["fineforge", "datatrove"] if args.side == "both" else [args.side]
    results = {}
    for side in sides:
        command = [sys.executable, "-m", "benchmarks.dedup", "--documents", str(args.documents)]
        command += ["--sentences", str(low), str(high)]
        results[side] = measure([*command, "--workdir", str(args.workdir), "--run", side])
        print(side, json.dumps(results[side]), flush=True)
    print("input", shape_file(input_dir).read_text())
    if len(results) == 2:
        ratio = results["datatrove"]["seconds"] / results["fineforge"]["seconds"]
        print(
            f"N={args.documents} cores={CORES}: fineforge {results['fineforge']['seconds']}s, "
            f"datatrove {results['datatrove']['seconds']}s, speed ratio (datatrove/fineforge) {ratio:.2f}x"
        )


if __name__ == "__main__":
    main()
