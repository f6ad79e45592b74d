"""Tokenize benchmark: the Spark tokenize stage vs raw batch encoding with 2 threads, on the same text.

    .venv/bin/python benchmarks/tokens.py [--corpus WORKDIR/DUMP/scrubbed ...] [--vocab-size 8192]

1. tokens/s of the whole Spark stage (Parquet in, shards + manifest out; local[2]) against the tokenizer
   library's own batch encoding of the same documents with 2 threads (HuggingFace `tokenizers`
   `encode_batch_fast` for the trained BPE, tiktoken `encode_ordinary_batch` for GPT-2 and, stricter, its
   `encode_to_numpy`, which the stage uses); goal >= 0.8x.
2. bytes per token of a BPE trained on the corpus's train split vs GPT-2, on the held-out val split.

Without --corpus the documents are real text of ../shared/data written in the data build's schema:
tinyshakespeare chunks, trafilatura's evaluation snippets (990 pages) and the 75-language sentences.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

THREADS = 2
os.environ.setdefault("RAYON_NUM_THREADS", str(THREADS))  # before `tokenizers` starts its thread pool

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FINEFORGE_SHARED_DATA", ROOT.parent / "shared" / "data"))
SHAKESPEARE_CHUNK_CHARS = 3000
SENTENCES_PER_DOCUMENT = 20


def real_text_corpus(folder: Path) -> Path:
    """Real documents of ../shared/data as Parquet in the scrubbed stage's columns."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    docs: list[tuple[str, str]] = []
    shakespeare = (SHARED / "corpora" / "tinyshakespeare.txt").read_text()
    for i in range(0, len(shakespeare), SHAKESPEARE_CHUNK_CHARS):
        docs.append((f"shakespeare-{i}", shakespeare[i : i + SHAKESPEARE_CHUNK_CHARS]))
    for n, entry in enumerate(json.loads((SHARED / "html" / "trafilatura-evaldata.json").read_text()).values()):
        if text := "\n".join(entry.get("with", [])).strip():
            docs.append((f"eval-{n}", text))
    for path in sorted((SHARED / "lid" / "lingua-sentences").glob("*.txt")):
        lines = path.read_text().splitlines()
        for i in range(0, len(lines), SENTENCES_PER_DOCUMENT):
            docs.append((f"lingua-{path.stem}-{i}", "\n".join(lines[i : i + SENTENCES_PER_DOCUMENT])))
    folder.mkdir(parents=True, exist_ok=True)
    n = len(docs)
    table = pa.table({
        "id": [d[0] for d in docs], "text": [d[1] for d in docs], "url": [""] * n, "dump": ["bench"] * n,
        "warc_file": [""] * n, "warc_offset": [0] * n, "crawl_date": [""] * n, "language": [""] * n,
        "language_score": [0.0] * n,
    })
    pq.write_table(table, folder / "part-00000.parquet", row_group_size=2048)
    return folder


def read_documents(inputs: list[str]) -> list[tuple[str, str]]:
    import pyarrow.parquet as pq

    from fineforge.tasks.common.documents import parquet_files
    from fineforge.tasks.tokens.documents import document_text

    docs = []
    for path in parquet_files(inputs):
        table = pq.read_table(path, columns=["id", "text"])
        for doc_id, raw in zip(table.column("id").to_pylist(), table.column("text").to_pylist(), strict=True):
            text, _ = document_text(raw)
            if text is not None:
                docs.append((doc_id, text))
    return docs


def numpy_batch(encoding, texts: list[str]) -> list:
    """tiktoken's `encode_to_numpy` of every text (the ids of `encode_ordinary`) on THREADS threads."""
    with ThreadPoolExecutor(THREADS) as pool:
        return list(pool.map(partial(encoding.encode_to_numpy, disallowed_special=()), texts))


def side_by_side(spark, config, scratch: Path, repeats: int, raw: dict) -> tuple[dict, dict]:
    """The stage's runs (the first with cold Python workers, then `repeats` warm) interleaved with runs of each raw
    encoder of `raw` (label -> callable), so that a change of the shared machine's load hits both sides alike.
    Returns the stage's rates and, per label, the raw encoder's best seconds and its output."""
    from fineforge.tasks.tokens.job import write_token_shards

    times, stats, raw_best = [], {}, {label: (float("inf"), None) for label in raw}
    for run in range(repeats + 1):
        out = scratch / f"{Path(config.tokenizer).stem}-{run}"
        start = time.perf_counter()
        stats = write_token_shards(spark, config, out)
        times.append(time.perf_counter() - start)
        for label, encode in raw.items():
            start = time.perf_counter()
            encoded = encode()
            raw_best[label] = min(raw_best[label], (time.perf_counter() - start, encoded), key=lambda r: r[0])
    stage = {"tokens": stats["tokens"], "cold_s": times[0], "warm_s": min(times[1:]),
             "cold_tokens_per_s": stats["tokens"] / times[0], "warm_tokens_per_s": stats["tokens"] / min(times[1:])}
    return stage, raw_best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", action="append", help="Parquet folder of documents (repeatable).")
    parser.add_argument("--vocab-size", type=int, default=8192)
    parser.add_argument("--val-fraction", type=float, default=0.1)
    parser.add_argument("--repeats", type=int, default=4, help="Warm stage runs (each followed by raw runs).")
    parser.add_argument("--vocab-dir", default=str(SHARED / "tokenizers"))
    parser.add_argument("--json", type=Path, help="Also write the results here.")
    args = parser.parse_args()

    import tiktoken  # noqa: F401  (imported before timing)
    from tokenizers import Tokenizer as HFTokenizer

    from fineforge.model.tokenizer import load_tokenizer
    from fineforge.tasks.common.spark import SparkConfig, spark_session
    from fineforge.tasks.tokens.bpe import train_bpe_tokenizer
    from fineforge.tasks.tokens.config import TokenizeConfig, TokenizerTrainingConfig
    from fineforge.tasks.tokens.documents import validation_split

    scratch = Path(tempfile.mkdtemp(prefix="fineforge-bench-tokenize-"))
    inputs = args.corpus or [str(real_text_corpus(scratch / "corpus"))]
    docs = read_documents(inputs)
    texts = [t for _, t in docs]
    text_bytes = sum(len(t.encode()) for t in texts)
    print(f"corpus: {len(docs)} documents, {text_bytes / 1e6:.1f} MB of text from {inputs}")

    spark = spark_session(SparkConfig(master=f"local[{THREADS}]", app_name="bench-tokenize"))
    bpe_path = scratch / "bpe.json"
    start = time.perf_counter()
    training = TokenizerTrainingConfig(input=inputs, output=str(bpe_path), vocab_size=args.vocab_size,
                                       val_fraction=args.val_fraction)
    bpe = train_bpe_tokenizer(spark, training)
    train_s = time.perf_counter() - start
    gpt2 = load_tokenizer("gpt2", args.vocab_dir)

    rows = []
    raw_hf = HFTokenizer.from_file(str(bpe_path))
    raw_tiktoken = gpt2._encoding  # the published encoding itself, without fineforge's wrapper
    raw = {
        str(bpe_path): {"trained BPE (tokenizers)": lambda: raw_hf.encode_batch_fast(texts, add_special_tokens=False)},
        "gpt2": {
            "gpt2 (tiktoken)": lambda: raw_tiktoken.encode_ordinary_batch(texts, num_threads=THREADS),
            # tiktoken's numpy path (what the stage uses), on 2 threads: no Python int per token
            "gpt2 (tiktoken numpy)": lambda: numpy_batch(raw_tiktoken, texts),
        },
    }
    for spec, encoders in raw.items():
        config = TokenizeConfig(input=inputs, workdir=str(scratch), name="bench", tokenizer=spec,
                                vocab_dir=args.vocab_dir, val_fraction=args.val_fraction,
                                spark={"master": f"local[{THREADS}]"})
        stage, raw_best = side_by_side(spark, config, scratch / "shards", args.repeats, encoders)
        for label, (raw_s, encoded) in raw_best.items():
            ids = [e.ids for e in encoded] if label.startswith("trained") else encoded
            raw_tokens = sum(len(x) + 1 for x in ids)  # + the end-of-document token, as the stage writes
            assert stage["tokens"] == raw_tokens, (stage["tokens"], raw_tokens)
            rows.append({"tokenizer": label, "tokens": raw_tokens, "raw_s": raw_s,
                         "raw_tokens_per_s": raw_tokens / raw_s, **stage,
                         "ratio_warm": stage["warm_tokens_per_s"] / (raw_tokens / raw_s),
                         "ratio_cold": stage["cold_tokens_per_s"] / (raw_tokens / raw_s)})

    held_out = [t for i, t in docs if validation_split(i, args.val_fraction) == "val"]
    held_bytes = sum(len(t.encode()) for t in held_out)
    bpt = {name: held_bytes / sum(len(ids) for ids in tok.encode_batch(held_out))
           for name, tok in ((f"trained BPE {bpe.vocab_size}", bpe), (f"gpt2 {gpt2.vocab_size}", gpt2))}

    print(f"\ntokenize throughput, {THREADS} threads / local[{THREADS}] (stage = Parquet -> shards + manifest)")
    print(f"{'tokenizer (raw encoder)':26} {'tokens':>10} {'raw tok/s':>12} {'stage cold':>12} {'stage warm':>12} "
          f"{'warm/raw':>9} {'cold/raw':>9}")
    for r in rows:
        print(f"{r['tokenizer']:26} {r['tokens']:>10,} {r['raw_tokens_per_s']:>12,.0f} {r['cold_tokens_per_s']:>12,.0f}"
              f" {r['warm_tokens_per_s']:>12,.0f} {r['ratio_warm']:>8.2f}x {r['ratio_cold']:>8.2f}x")
    print(f"\nbytes per token on held-out text ({len(held_out)} val documents, {held_bytes / 1e6:.2f} MB); "
          f"BPE trained in {train_s:.1f}s on the train split")
    for name, value in bpt.items():
        print(f"  {name:24} {value:.3f}")
    names = list(bpt)
    print(f"  ratio trained/gpt2: {bpt[names[0]] / bpt[names[1]]:.3f}")
    if args.json:
        args.json.write_text(json.dumps({"throughput": rows, "bytes_per_token": bpt}, indent=2))
    spark.stop()


if __name__ == "__main__":
    main()
