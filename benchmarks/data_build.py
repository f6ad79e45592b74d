"""Benchmark of the filter stage, side by side in one run, on 2 cores.

(a) fineforge's Spark filter stage (local[2], one task per WARC file),
(b) datatrove's LocalPipelineExecutor with the same steps and settings (2 tasks, 2 workers),
(c) a bare single-process loop of trafilatura.extract over the same HTML records.

Prints documents/s of each (HTML documents in / wall seconds), the ratios a/b and a/c, and, in the FineWeb-exact
configuration, checks that (a) and (b) keep the same documents with identical text (fineforge's default
extraction and HTML decision differ from datatrove's on purpose: only the kept counts are printed).
Then the profile per step: each side's steps run in a fresh process of its own over the same files (fineforge:
its reader, steps with extraction ahead, Parquet writer; datatrove: WarcReader, the reference steps, JsonlWriter),
with the wall and CPU ms/document of each step (`step_profile`). Deduplication is a stage of its own:
`python -m benchmarks.dedup`. `--extraction fineweb` (the default) is the FineWeb-exact configuration,
`--extraction default` fineforge's defaults (its extraction and HTML decision). `--profile` also prints a
cProfile of one fineforge task.

    .venv/bin/python -m benchmarks.data_build [--shared ../shared/data] [--extraction fineweb|default] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import gzip
import json
import multiprocessing
import pstats
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path

from benchmarks.step_profile import StepClock, drain, profile_table
from fineforge.tasks.common.datatrove_steps import run_steps, step_name
from fineforge.tasks.common.documents import PartWriter, document_row
from fineforge.tasks.common.spark import SparkConfig, spark_session
from fineforge.tasks.filter.block_lists import prepare_block_lists
from fineforge.tasks.filter.config import FilterConfig, build_filter_steps
from fineforge.tasks.filter.job import EXTRACT_AHEAD, filter_warc, filter_warcs_to_parquet
from fineforge.tasks.filter.warc_records import iter_html_documents

ROOT = Path(__file__).resolve().parents[1]

WARCS = ["bench-990-pages.warc.gz", "archive-it-2008-example.warc.gz"]
CORES = 2
# FineWeb-exact: FineWeb's settings (its extraction, `method: fineweb`, so (b) runs datatrove's own Trafilatura
# step; datatrove's choice of HTML records, `html_records: datatrove`), except a generous extraction timeout:
# datatrove's is wall-clock time, and with its 1 s a loaded machine turns slow pages into timeouts at random,
# so the two runs could not be compared document by document. `default`: fineforge's defaults, same timeout.
CONFIGS = {"fineweb": FilterConfig(extraction={"method": "fineweb", "timeout": 60}, html_records="datatrove"),
           "default": FilterConfig(extraction={"timeout": 60})}
CONFIG = CONFIGS["fineweb"]
PROFILE_TOP = 25


def run_fineforge(uris: list[str], workdir: Path) -> tuple[float, dict, dict[str, str]]:
    import pyarrow.parquet as pq

    spark = spark_session(SparkConfig(master=f"local[{CORES}]", app_name="fineforge-bench"))
    prepare_block_lists()  # once per machine (seconds, the first time), as datatrove unpacks the same lists once
    started = time.perf_counter()
    stats = filter_warcs_to_parquet(spark, uris, CONFIG, workdir / "fineforge", "BENCH")
    seconds = time.perf_counter() - started
    kept = {row["id"]: row["text"] for row in pq.read_table(workdir / "fineforge").to_pylist()}
    return seconds, stats, kept


def datatrove_reader(shared: Path, names: list[str], workdir: Path):
    """datatrove's WarcReader over the WARC files `names` of the shared data."""
    from datatrove.pipeline.readers import WarcReader

    paths_file = workdir / "paths.txt"
    paths_file.write_text("\n".join(names) + "\n")
    return WarcReader(str(shared / "warc"), paths_file=str(paths_file))


def run_datatrove(shared: Path, names: list[str], workdir: Path) -> tuple[float, dict[str, str]]:
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.writers import JsonlWriter

    executor = LocalPipelineExecutor(
        pipeline=[
            datatrove_reader(shared, names, workdir),
            *build_filter_steps(CONFIG, reference=True),
            JsonlWriter(str(workdir / "datatrove")),
        ],
        tasks=len(names),
        workers=CORES,
        logging_dir=str(workdir / "datatrove-logs"),
    )
    started = time.perf_counter()
    executor.run()
    seconds = time.perf_counter() - started
    kept = {}
    for part in sorted((workdir / "datatrove").glob("*.jsonl.gz")):
        with gzip.open(part, "rt") as lines:
            for line in lines:
                document = json.loads(line)
                kept[document["id"]] = document["text"]
    return seconds, kept


def run_bare_trafilatura(uris: list[str]) -> tuple[float, int]:
    from trafilatura import extract

    documents = [d for uri in uris for d in _read(uri, CONFIG)]
    started = time.perf_counter()
    for document in documents:
        extract(document.text, favor_precision=True, include_comments=False, deduplicate=True)
    return time.perf_counter() - started, len(documents)


def _read(uri: str, config: FilterConfig) -> Iterator:
    return iter_html_documents(uri, Counter(), html_records=config.html_records)


def _written(documents: Iterable, writer: PartWriter) -> Iterator:
    for document in documents:
        writer.write(document_row(document, "BENCH"))
        yield document


def profile_fineforge_steps(uris: list[str], workdir: Path, config: FilterConfig) -> StepClock:
    """fineforge's steps over `uris` in this process, as one filter task runs them, each step timed."""
    clock = StepClock()
    read = clock.timed((d for uri in uris for d in _read(uri, config)), "read")
    observe = partial(_observe, clock)
    with PartWriter(workdir / "steps.parquet") as writer:
        kept = run_steps(build_filter_steps(config), read, extract_ahead=EXTRACT_AHEAD, observe=observe)
        drain(clock.timed(_written(kept, writer), "write"))
    return clock


def profile_datatrove_steps(shared: Path, names: list[str], workdir: Path, config: FilterConfig) -> StepClock:
    """datatrove's reader, reference steps and writer over the same files in this process, each step timed."""
    from datatrove.pipeline.writers import JsonlWriter

    clock = StepClock()
    pipeline = clock.timed(datatrove_reader(shared, names, workdir)(None, 0, 1), "read")
    for step in build_filter_steps(config, reference=True):
        pipeline = _observe(clock, step(pipeline, 0, 1), step)
    drain(clock.timed(JsonlWriter(str(workdir / "datatrove-steps"))(pipeline, 0, 1), "write"))
    return clock


def _observe(clock: StepClock, documents: Iterable, step) -> Iterator:
    name = step_name(step)
    return clock.timed(documents, "extraction" if name == "trafilatura" else name)  # one row for both extractors


def in_fresh_process(function, *args):
    """`function(*args)` in a new Python process: each side pays its own one-time loads (spaCy's tokenizer, the
    language model), which a process shared by both sides would charge to the side that runs first."""
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(function, *args).result()


def print_step_profile(shared: Path, names: list[str], workdir: Path) -> None:
    uris = [str(shared / "warc" / name) for name in names]
    fineforge = in_fresh_process(profile_fineforge_steps, uris, workdir, CONFIG)
    datatrove = in_fresh_process(profile_datatrove_steps, shared, names, workdir, CONFIG)
    order = [name for name in fineforge.seconds if name != "write"]
    order += [name for name in datatrove.seconds if name not in order and name != "write"] + ["write"]
    print("profile per step (wall and CPU ms per document read, a fresh process per side; CPU: the process's own,"
          " without its extraction subprocess):", flush=True)
    for line in profile_table({"fineforge": (fineforge, "read"), "datatrove": (datatrove, "read")}, order):
        print("  " + line, flush=True)


def profile_one_task(uri: str, workdir: Path) -> None:
    profiler = cProfile.Profile()
    profiler.runcall(filter_warc, uri, CONFIG, workdir / "profile.parquet", "BENCH")
    pstats.Stats(profiler).sort_stats("cumulative").print_stats(PROFILE_TOP)


def compare_side_by_side(shared: Path, names: list[str], workdir: Path) -> bool:
    """Run (a), (b) and (c) on the WARC files `names`; print their rates and ratios; whether (a) and (b) agree."""
    uris = [str(shared / "warc" / name) for name in names]
    seconds_b, kept_b = run_datatrove(shared, names, workdir)
    seconds_a, stats, kept_a = run_fineforge(uris, workdir)
    seconds_c, documents_c = run_bare_trafilatura(uris)
    documents = stats["documents_in"]
    rates = {"a": documents / seconds_a, "b": documents / seconds_b, "c": documents_c / seconds_c}
    print(f"inputs: {', '.join(names)}; {documents} HTML documents; {CORES} cores")
    print(f"(a) fineforge Spark filter stage      {seconds_a:8.1f} s  {rates['a']:7.2f} documents/s")
    print(f"(b) datatrove LocalPipelineExecutor   {seconds_b:8.1f} s  {rates['b']:7.2f} documents/s")
    print(f"(c) bare trafilatura.extract loop     {seconds_c:8.1f} s  {rates['c']:7.2f} documents/s")
    print(f"a/b = {rates['a'] / rates['b']:.2f}   a/c = {rates['a'] / rates['c']:.2f}")
    decisions = {k: v for k, v in stats["reader"].items() if k.startswith("payload_")}
    print(f"kept: fineforge {len(kept_a)}, datatrove {len(kept_b)}; fineforge's HTML decisions: {decisions}")
    if CONFIG != CONFIGS["fineweb"]:
        print("identical output of (a) and (b): not expected (fineforge's defaults differ on purpose)", flush=True)
        return True
    identical = kept_a == kept_b
    print(f"identical output of (a) and (b): {identical}", flush=True)
    return identical


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--profile", action="store_true", help="also profile one fineforge task in-process")
    parser.add_argument("--extraction", choices=sorted(CONFIGS), default="fineweb",
                        help="fineweb: the FineWeb-exact configuration; default: fineforge's default extraction")
    parser.add_argument("--warc", action="append", help=f"a WARC file of <shared>/warc (repeatable; default {WARCS})")
    args = parser.parse_args()
    global CONFIG
    CONFIG = CONFIGS[args.extraction]
    names = args.warc or WARCS
    print(f"extraction: {args.extraction}", flush=True)
    with tempfile.TemporaryDirectory(prefix="fineforge-bench-") as tmp:
        workdir = Path(tmp)
        identical = compare_side_by_side(args.shared, names, workdir)
        print_step_profile(args.shared, names, workdir)
        if args.profile:
            profile_one_task(str(args.shared / "warc" / names[0]), workdir)
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
