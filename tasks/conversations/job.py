"""The conversation stage: sources -> rendered, tokenized, masked shards under `<workdir>/conversations/<name>/`.

Per source, in config order: read or generate the records, validate and render them (counting what is
dropped and why), send each to the train or validation split by a hash of (source, id), and write the
training ones `epochs` times (whole passes, then a seeded sample for the fraction) with the source's
loss `weight`. Validation conversations are written once, with weight 1, so validation losses stay
comparable across mixtures. Output (format: `model/conversation_shards.py`, `docs/conversations.md`):
token, mask and index shards, `manifest.json`, the kept conversations as `train.jsonl` / `val.jsonl`
(with their answers, for RL), and `stats.json`, written atomically as a stage.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fineforge.model.chat import ChatTemplate, require_chat_tokens
from fineforge.model.conversation_shards import CONVERSATIONS_KIND, INDEX_DTYPE, write_conversation_shard
from fineforge.model.shards import shard_dtype, write_manifest
from fineforge.model.tokenizer import Tokenizer, load_tokenizer
from fineforge.tasks.common.stage import StageOutput, execute_stage, file_identity
from fineforge.tasks.common.statistics import merge_counts
from fineforge.tasks.conversations.code_tasks import code_task_conversations, read_words
from fineforge.tasks.conversations.config import (
    CodeTaskSource,
    ConversationsConfig,
    CorpusSearchSource,
    FileSource,
    Gsm8kSource,
    IdentitySource,
    JsonlSource,
    OasstSource,
    Source,
    WordProblemSource,
)
from fineforge.tasks.conversations.corpus_search import corpus_search_conversations
from fineforge.tasks.conversations.gsm8k import gsm8k_conversations
from fineforge.tasks.conversations.identity import identity_conversations
from fineforge.tasks.conversations.oasst import oasst_conversations
from fineforge.tasks.conversations.records import ConversationRecord, SourceCounts, write_jsonl
from fineforge.tasks.conversations.rendering import RenderedConversation, render_record, with_system
from fineforge.tasks.conversations.user_jsonl import jsonl_conversations
from fineforge.tasks.conversations.word_problems import word_problem_conversations
from fineforge.tasks.search.config import indexed_dumps
from fineforge.tasks.tokens.job import tokenizer_identity

log = logging.getLogger(__name__)

CONVERSATIONS_STAGE = "conversations"
SPLITS = ("train", "val")


def source_records(source: Source, counts: SourceCounts) -> Iterator[ConversationRecord]:
    """The records of one source (at most `limit`), its system message put first."""
    label = source.label
    if isinstance(source, OasstSource):
        records = oasst_conversations(source.path, label, counts)
    elif isinstance(source, Gsm8kSource):
        records = gsm8k_conversations(source.path, label, source.calculator, counts)
    elif isinstance(source, JsonlSource):
        records = jsonl_conversations(source.path, label, source.roles, counts)
    elif isinstance(source, IdentitySource):
        records = identity_conversations(source.count, source.assistant_name, source.maker, source.languages,
                                         source.seed, label)
    elif isinstance(source, WordProblemSource):
        records = word_problem_conversations(source.count, source.max_difficulty, source.answer_first, source.seed,
                                             label)
    elif isinstance(source, CodeTaskSource):
        words = read_words(source.words) if source.words else []
        records = code_task_conversations(source.count, source.tasks, words, source.tool, source.executor,
                                          source.seed, label, counts)
    elif isinstance(source, CorpusSearchSource):
        records = corpus_search_conversations(source.workdir, source.k, source.dumps, source.facts,
                                              source.per_document, source.tool, source.seed, label, counts)
    else:
        raise TypeError(f"unknown source {type(source).__name__}")
    for record in itertools.islice(records, source.limit):
        record.messages = with_system(record.messages, source.system)
        yield record


def split_of(source: str, conversation_id: str, val_fraction: float) -> str:
    """"val" for a stable `val_fraction` of (source, id) pairs, else "train"."""
    digest = hashlib.sha256(f"{source}\0{conversation_id}".encode()).digest()
    return "val" if int.from_bytes(digest[:8], "big") / 2**64 < val_fraction else "train"


def epoch_copies(count: int, epochs: float, rng: random.Random) -> list[int]:
    """Indices of `count` items repeated `epochs` times: whole passes, then a sample for the fraction."""
    whole, fraction = divmod(epochs, 1.0)
    return [*range(count)] * int(whole) + sorted(rng.sample(range(count), round(fraction * count)))


class ShardSetWriter:
    """Collects whole conversations per split and writes them as shards of at most `shard_tokens` tokens."""

    def __init__(self, directory: Path, dtype: str, shard_tokens: int) -> None:
        self.directory, self.dtype, self.shard_tokens = directory, dtype, shard_tokens
        self.pending: dict[str, list[tuple[RenderedConversation, float, int]]] = {s: [] for s in SPLITS}
        self.pending_tokens = dict.fromkeys(SPLITS, 0)
        self.entries: list[dict] = []

    def add(self, split: str, conversation: RenderedConversation, weight: float, source: int) -> None:
        if self.pending_tokens[split] + conversation.ids.size > self.shard_tokens:
            self.flush(split)
        self.pending[split].append((conversation, weight, source))
        self.pending_tokens[split] += conversation.ids.size

    def flush(self, split: str) -> None:
        items = self.pending[split]
        if not items:
            return
        lengths = np.array([c.ids.size for c, _, _ in items], dtype=np.int64)
        index = np.zeros(len(items), dtype=INDEX_DTYPE)
        index["start"], index["length"] = np.cumsum(lengths) - lengths, lengths
        index["weight"], index["source"] = [w for _, w, _ in items], [s for _, _, s in items]
        number = sum(1 for e in self.entries if e["split"] == split)
        entry = write_conversation_shard(
            self.directory, f"{split}_{number:06d}", split, np.concatenate([c.ids for c, _, _ in items]),
            np.concatenate([c.mask for c, _, _ in items]), index, self.dtype,
        )
        self.entries.append(entry)
        log.info("wrote %s (%d conversations, %d tokens)", entry["file"], entry["conversations"], entry["tokens"])
        self.pending[split], self.pending_tokens[split] = [], 0


def source_statistics(source: Source, counts: SourceCounts, kept: dict[str, list[RenderedConversation]],
                      train_copies: list[int]) -> dict:
    """One source's counts: in, out, dropped by reason, changed, written conversations and tokens per split."""
    train = [kept["train"][i] for i in train_copies]
    unique = kept["train"] + kept["val"]
    out, dropped = len(unique), sum(counts.dropped.values())
    return {
        "name": source.label, "kind": source.kind, "weight": source.weight, "epochs": source.epochs,
        "conversations_in": out + dropped, "conversations_out": out, "dropped": dict(counts.dropped),
        "changed": dict(counts.changed),
        "conversations_train": len(train), "conversations_val": len(kept["val"]),
        "tokens_train": sum(c.ids.size for c in train), "tokens_val": sum(c.ids.size for c in kept["val"]),
        "trainable_tokens_train": sum(c.trainable_tokens for c in train),
        "trainable_tokens_val": sum(c.trainable_tokens for c in kept["val"]),
        "unique_tokens": sum(c.ids.size for c in unique),
        "max_conversation_tokens": max((c.ids.size for c in unique), default=0),
    }


def write_source(source: Source, number: int, config: ConversationsConfig, template: ChatTemplate,
                 writer: ShardSetWriter, records: dict[str, list[ConversationRecord]]) -> dict:
    """Render one source into the writer (train copies by epochs, val once); return its statistics."""
    counts = SourceCounts()
    kept: dict[str, list[RenderedConversation]] = {split: [] for split in SPLITS}
    for record in source_records(source, counts):
        rendered = render_record(record, template, config.context_length, config.too_long, counts)
        if rendered is not None:
            kept[split_of(source.label, record.id, config.val_fraction)].append(rendered)
    rng = random.Random(f"{config.seed}/{source.label}")
    train_copies = epoch_copies(len(kept["train"]), source.epochs, rng)
    for i in train_copies:
        writer.add("train", kept["train"][i], source.weight, number)
    for conversation in kept["val"]:
        writer.add("val", conversation, 1.0, number)
    for split in SPLITS:
        records[split] += [c.record for c in kept[split]]
    stats = source_statistics(source, counts, kept, train_copies)
    log.info("source %s: %d conversations in, %d out, dropped %s", source.label, stats["conversations_in"],
             stats["conversations_out"], stats["dropped"] or "none")
    return stats


def write_conversation_manifest(config: ConversationsConfig, output_dir: Path, tokenizer: Tokenizer, dtype: str,
                                entries: list[dict], sources: list[dict]) -> dict:
    """manifest.json of a conversation shard set, written by model/shards.py with the conversation details."""
    def total(key: str, split: str) -> int:
        return sum(e[key] for e in entries if e["split"] == split)

    return write_manifest(
        output_dir, tokenizer, dtype, entries,
        kind=CONVERSATIONS_KIND, format_version=1, pad_id=tokenizer.eot_id,
        context_length=config.context_length, shard_tokens=config.shard_tokens, val_fraction=config.val_fraction,
        trainable_tokens={split: total("trainable_tokens", split) for split in SPLITS},
        documents={split: total("conversations", split) for split in SPLITS},
        sources=[s["name"] for s in sources],
    )  # fmt: skip


def write_conversations(config: ConversationsConfig, output_dir: Path, tokenizer: Tokenizer) -> dict:
    """The stage's work: every source into shards + manifest + records in `output_dir`; return the stats."""
    output_dir.mkdir(parents=True, exist_ok=True)
    dtype = shard_dtype(tokenizer.vocab_size)
    writer = ShardSetWriter(output_dir, dtype, config.shard_tokens)
    records: dict[str, list[ConversationRecord]] = {split: [] for split in SPLITS}
    template = ChatTemplate(tokenizer)
    sources = [write_source(s, n, config, template, writer, records) for n, s in enumerate(config.sources)]
    for split in SPLITS:
        writer.flush(split)
        write_jsonl(output_dir / f"{split}.jsonl", records[split])
    manifest = write_conversation_manifest(config, output_dir, tokenizer, dtype, writer.entries, sources)
    return conversation_statistics(manifest, sources)


def conversation_statistics(manifest: dict, sources: list[dict]) -> dict:
    """The stage's stats.json body: totals per split, drops and changes by reason, lengths, loss share per source."""
    weighted = [s["weight"] * s["trainable_tokens_train"] for s in sources]
    for source, share in zip(sources, weighted, strict=True):
        source["loss_share"] = round(share / sum(weighted), 4) if sum(weighted) else 0.0
    out = sum(s["conversations_out"] for s in sources)
    unique_tokens = sum(s["unique_tokens"] for s in sources)
    mean = unique_tokens / out if out else 0.0
    return {
        "conversations_in": sum(s["conversations_in"] for s in sources),
        "conversations_out": out,
        "dropped": merge_counts(s["dropped"] for s in sources),
        "changed": merge_counts(s["changed"] for s in sources),
        **{f"conversations_{split}": manifest["documents"][split] for split in SPLITS},
        **{f"tokens_{split}": manifest["tokens"].get(split, 0) for split in SPLITS},
        **{f"trainable_tokens_{split}": manifest["trainable_tokens"].get(split, 0) for split in SPLITS},
        "mean_conversation_tokens": round(mean, 1),
        "max_conversation_tokens": max((s["max_conversation_tokens"] for s in sources), default=0),
        "context_length": manifest["context_length"],
        "shards": len(manifest["shards"]),
        "tokenizer": manifest["tokenizer"],
        "sources": sources,
    }


def stage_tokenizer(config: ConversationsConfig) -> Tokenizer:
    """The config's tokenizer, checked for the chat tokens (fails before any work)."""
    tokenizer = load_tokenizer(config.tokenizer, config.vocab_dir)
    require_chat_tokens(tokenizer)
    return tokenizer


@dataclass(frozen=True)
class ConversationsStage:
    """`<workdir>/conversations/<name>/`: the rendered, tokenized, masked conversations of the sources (no Spark)."""

    config: ConversationsConfig
    tokenizer: Tokenizer = field(compare=False)
    group: str = CONVERSATIONS_STAGE

    @property
    def name(self) -> str:
        return self.config.name

    def fingerprint_parts(self) -> list[Any]:
        """The input files, the search indexes asked, the tokenizer (file contents too), every setting but where."""
        sources = self.config.sources
        paths = [s.path for s in sources if isinstance(s, FileSource)]
        paths += [s.words for s in sources if isinstance(s, CodeTaskSource) and s.words]
        indexes = [indexed_dumps(Path(s.workdir)) for s in sources if isinstance(s, CorpusSearchSource)]
        settings = self.config.model_dump(mode="json", exclude={"workdir", "name", "vocab_dir"})
        return [file_identity(paths), indexes, tokenizer_identity(self.config.tokenizer), settings]

    def run(self, spark, output_dir: Path) -> dict[str, Any]:
        return write_conversations(self.config, output_dir, self.tokenizer)


def build_conversations(config: ConversationsConfig, tokenizer: Tokenizer | None = None) -> StageOutput:
    """Run the stage at `<workdir>/conversations/<name>/`: atomic, skipped when complete for the same inputs."""
    stage = ConversationsStage(config, tokenizer or stage_tokenizer(config))
    return execute_stage(stage, config.workdir)
