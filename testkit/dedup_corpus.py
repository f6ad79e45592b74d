"""Dedup inputs from the real text of ../shared/data, with planted near-duplicates (tests and benchmarks).

Documents are written as Parquet with the columns of the data build's `filtered` stage.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

DUMP = "CC-MAIN-2024-22"
CRAWL_DATE = "2024-05-20T10:00:00Z"
SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("text", pa.string()),
        ("url", pa.string()),
        ("dump", pa.string()),
        ("warc_file", pa.string()),
        ("warc_offset", pa.int64()),
        ("crawl_date", pa.string()),
        ("language", pa.string()),
        ("language_score", pa.float64()),
    ]
)
_WORD = re.compile(r"\S+")
# languages of lingua-sentences used for volume documents (web sentences, Leipzig corpora)
VOLUME_LANGUAGES = ("en", "de", "fr", "es", "it", "nl", "pt", "pl", "sv", "da")


def real_texts(shared_data: Path) -> list[str]:
    """Real documents: trafilatura eval pages (their kept snippets), GSM8K problems, OASST messages,
    Shakespeare scenes."""
    pages = json.loads((shared_data / "html" / "trafilatura-evaldata.json").read_text())
    texts = ["\n".join(page.get("with", [])) for page in pages.values()]
    with (shared_data / "gsm8k" / "test.jsonl").open() as lines:
        for line in lines:
            row = json.loads(line)
            texts.append(f"{row['question']}\n{row['answer']}")
    with (shared_data / "sft" / "oasst-en-100-trees.jsonl").open() as lines:
        for line in lines:
            stack = [json.loads(line)["prompt"]]
            while stack:
                message = stack.pop()
                texts.append(message["text"])
                stack.extend(message.get("replies", []))
    paragraphs = (shared_data / "corpora" / "tinyshakespeare.txt").read_text().split("\n\n")
    texts.extend("\n\n".join(paragraphs[i : i + 8]) for i in range(0, len(paragraphs), 8))
    return [text for text in texts if text.strip()]


def sentences(shared_data: Path, languages: tuple[str, ...] = VOLUME_LANGUAGES) -> list[list[str]]:
    """Real web sentences (lingua-sentences), one list per language."""
    folder = shared_data / "lid" / "lingua-sentences"
    return [(folder / f"{code}.txt").read_text().splitlines() for code in languages]


def sentence_documents(pools: list[list[str]], count: int, seed: int, sentences_per_doc=(8, 40)) -> Iterator[str]:
    """`count` distinct documents, each a run of real sentences of one language (volume input)."""
    rng = random.Random(seed)
    for _ in range(count):
        pool = pools[rng.randrange(len(pools))]
        yield " ".join(rng.choices(pool, k=rng.randint(*sentences_per_doc)))


def edit_words(text: str, fraction: float, rng: random.Random, vocabulary: list[str]) -> str:
    """A near-duplicate: `fraction` of the words replaced by other real words."""
    words = _WORD.findall(text)
    for index in rng.sample(range(len(words)), k=round(fraction * len(words))):
        words[index] = rng.choice(vocabulary)
    return " ".join(words)


def write_documents(texts: list[str], folder: Path, rows_per_file: int, dump: str = DUMP, **columns) -> Path:
    """Write documents as Parquet part files in `folder`; `columns` override per-document values (lists)."""
    folder.mkdir(parents=True, exist_ok=True)
    count = len(texts)
    data = {
        "id": [f"<urn:uuid:{dump}-{i:09d}>" for i in range(count)],
        "text": texts,
        "url": [f"https://example{i % 97}.org/page/{i}" for i in range(count)],
        "dump": [dump] * count,
        "warc_file": [f"crawl-data/{dump}/segments/warc/{i // 1000:05d}.warc.gz" for i in range(count)],
        "warc_offset": [i * 4096 for i in range(count)],
        "crawl_date": [CRAWL_DATE] * count,
        "language": ["en"] * count,
        "language_score": [0.9] * count,
    }
    data.update(columns)
    table = pa.table(data, schema=SCHEMA)
    for part, start in enumerate(range(0, max(count, 1), rows_per_file)):
        pq.write_table(table.slice(start, rows_per_file), folder / f"part-{part:05d}.parquet")
    return folder
