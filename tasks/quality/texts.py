"""The classifier's training texts: positives from reference sources, negatives sampled from a build's documents,
each with a stable key that decides its place in seeded samples and in the held-out split."""

from __future__ import annotations

import hashlib
import heapq
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq

from fineforge.tasks.common.documents import hash_below, parquet_files
from fineforge.tasks.conversations.gsm8k import gsm8k_conversations
from fineforge.tasks.conversations.oasst import oasst_conversations
from fineforge.tasks.conversations.records import ConversationRecord, SourceCounts
from fineforge.tasks.conversations.user_jsonl import jsonl_conversations
from fineforge.tasks.quality.config import (
    ConversationPositives,
    DocumentPositives,
    Gsm8kPositives,
    OasstPositives,
    PositiveSource,
)


@dataclass(frozen=True)
class Text:
    """One training text: `key` is unique within its class and stable across runs."""

    key: str
    text: str


def sample_rank(key: str, seed: int) -> bytes:
    """The place of `key` in the seeded random order of every sample."""
    return hashlib.sha1(f"{seed}:{key}".encode()).digest()


def seeded_sample(texts: Iterable[Text], count: int | None, seed: int) -> list[Text]:
    """`count` of the texts, chosen by a seeded hash of their keys (all of them when `count` is None)."""
    texts = [text for text in texts if text.text.strip()]
    if count is None or count >= len(texts):
        return texts
    return heapq.nsmallest(count, texts, key=lambda text: sample_rank(text.key, seed))


def is_held_out(key: str, share: float, seed: int) -> bool:
    """Whether the text with `key` is kept out of training (a stable `share` of keys, independent of sampling)."""
    return hash_below(f"held-out:{seed}:{key}", share)


def conversation_text(record: ConversationRecord) -> str:
    """A conversation as one text: its messages' contents, one after the other."""
    return "\n".join(message["content"] for message in record.messages
                     if isinstance(message, dict) and isinstance(message.get("content"), str))


def _records(source: Gsm8kPositives | OasstPositives | ConversationPositives) -> Iterable[ConversationRecord]:
    counts = SourceCounts()  # records that are not conversations are skipped (and logged) by the readers
    if isinstance(source, Gsm8kPositives):
        return gsm8k_conversations(source.path, source.kind, "strip", counts)
    if isinstance(source, OasstPositives):
        return oasst_conversations(source.path, source.kind, counts)
    return jsonl_conversations(source.path, source.kind, {}, counts)


def positive_texts(source: PositiveSource, seed: int) -> list[Text]:
    """The texts of one positive source (at most its `sample`), keyed by file and id."""
    if isinstance(source, DocumentPositives):
        return document_sample(parquet_files(source.input), source.sample, seed)
    texts = (Text(f"{source.path}:{record.id}", conversation_text(record)) for record in _records(source))
    return seeded_sample(texts, source.sample, seed)


def document_sample(files: list[Path], count: int | None, seed: int) -> list[Text]:
    """`count` documents of the Parquet `files` (all when None), chosen by a seeded hash of their ids; only the ids
    are read for the choice, then only the chosen texts are kept."""
    ranked = ((sample_rank(doc_id, seed), file_index, row) for file_index, path in enumerate(files)
              for row, doc_id in enumerate(pq.read_table(path, columns=["id"]).column("id").to_pylist()))
    chosen = list(ranked) if count is None else heapq.nsmallest(count, ranked)  # memory: `count` entries
    rows_of: dict[int, list[int]] = {}
    for _, file_index, row in chosen:
        rows_of.setdefault(file_index, []).append(row)
    texts = []
    for file_index, rows in sorted(rows_of.items()):
        table = pq.read_table(files[file_index], columns=["id", "text"]).take(sorted(rows))
        texts += [Text(doc_id, text) for doc_id, text in zip(table.column("id").to_pylist(),
                                                              table.column("text").to_pylist(), strict=True)]
    return [text for text in texts if text.text and text.text.strip()]
