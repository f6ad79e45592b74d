"""The rankings dataset: one judgement per JSONL line, appended and fsynced the moment it is submitted.

A judgement orders the completions of one prompt, best first:

    {"prompt_id": "p-17", "prompt": [{"role": "user", "content": "..."}],
     "completions": [{"id": "c-1", "text": "..."}, {"id": "c-2", "text": "..."}],
     "order": ["c-2", "c-1"], "judge": "alice", "time": "2025-06-01T10:00:00+00:00"}

A judgement is identified by its prompt id and the set of its completion ids. Appending one that is already
stored with the same order changes nothing (so a resubmitted form or a re-run import is harmless); one with
a different order is appended and, being the newest, replaces the earlier on reading (a correction).
Nothing already submitted is lost by a cancelled flow or a restarted server: each judgement is on disk before
`append_judgements` returns; a line cut short by a crash is skipped (and logged) on the next load.
Several processes may append to one file: appends hold an exclusive lock and first read what others wrote.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fineforge.tasks.preferences.jsonl import AppendOnlyJsonl

ROLES = ("system", "user", "assistant", "tool")
JudgementKey = tuple[str, tuple[str, ...]]


class InvalidJudgement(ValueError):
    """A judgement that cannot be stored; the message is the reason, fit to show to the person who sent it."""


@dataclass(frozen=True)
class Completion:
    id: str
    text: str


def _check_messages(messages: Any) -> None:
    if not isinstance(messages, list) or not messages:
        raise InvalidJudgement("prompt must be a non-empty list of messages")
    for n, message in enumerate(messages):
        if not isinstance(message, Mapping) or message.get("role") not in ROLES:
            raise InvalidJudgement(f"prompt message {n} needs a role among {ROLES}")
        if not isinstance(message.get("content"), str):
            raise InvalidJudgement(f"prompt message {n} needs a text content")


def _check_order(order: Sequence[str], completion_ids: Sequence[str]) -> None:
    known, seen = set(completion_ids), set()
    for completion_id in order:
        if completion_id not in known:
            raise InvalidJudgement(f"order names unknown completion {completion_id!r} (known: {sorted(known)})")
        if completion_id in seen:
            raise InvalidJudgement(f"completion {completion_id!r} is ranked twice")
        seen.add(completion_id)
    if seen != known:
        raise InvalidJudgement(f"order must rank every completion; unranked: {sorted(known - seen)}")


@dataclass(frozen=True)
class Judgement:
    """An ordering (best first) of a prompt's completions by a judge (a person's name, or the imported source)."""

    prompt_id: str
    prompt: list[dict]
    completions: tuple[Completion, ...]
    order: tuple[str, ...]
    judge: str
    time: str

    def __post_init__(self) -> None:
        if not isinstance(self.prompt_id, str) or not self.prompt_id:
            raise InvalidJudgement("prompt_id must be a non-empty string")
        _check_messages(self.prompt)
        ids = [c.id for c in self.completions]
        if len(ids) < 2:
            raise InvalidJudgement(f"a ranking needs at least 2 completions, got {len(ids)}")
        if any(not isinstance(i, str) or not i for i in ids) or len(set(ids)) != len(ids):
            raise InvalidJudgement(f"completion ids must be distinct non-empty strings, got {ids}")
        if any(not isinstance(c.text, str) for c in self.completions):
            raise InvalidJudgement("every completion needs a text")
        _check_order(self.order, ids)
        if not isinstance(self.judge, str) or not self.judge:
            raise InvalidJudgement("judge (who ranked) must be a non-empty string")

    @classmethod
    def create(
        cls, prompt_id: str, prompt: list[dict], completions: Iterable[tuple[str, str]], order: Sequence[str],
        judge: str, time: str | None = None,
    ) -> Judgement:
        """A validated judgement from (id, text) pairs, stamped with the current UTC time unless given."""
        return cls(prompt_id, [dict(m) for m in prompt], tuple(Completion(str(i), t) for i, t in completions),
                   tuple(order), judge, time or datetime.now(UTC).isoformat(timespec="seconds"))

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> Judgement:
        """Parse and validate one stored line."""
        if not isinstance(record.get("order"), list):
            raise InvalidJudgement("order must be a list of completion ids, best first")
        try:
            completions = [(c["id"], c["text"]) for c in record["completions"]]
            return cls.create(record["prompt_id"], record["prompt"], completions, record["order"],
                              record["judge"], record["time"])
        except (KeyError, TypeError) as error:
            raise InvalidJudgement(f"not a judgement record ({type(error).__name__}: {error})") from None

    @property
    def key(self) -> JudgementKey:
        return self.prompt_id, tuple(sorted(c.id for c in self.completions))

    @property
    def ranks(self) -> list[int]:
        """Rank of each completion (0 = best), in the order of `completions`."""
        position = {completion_id: rank for rank, completion_id in enumerate(self.order)}
        return [position[c.id] for c in self.completions]

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)


def order_from_ranks(ranks: Mapping[str, int]) -> list[str]:
    """Completion ids best first from {id: rank} (as a form submits them); a rank given twice is rejected."""
    holder: dict[int, str] = {}
    for completion_id, rank in ranks.items():
        if not isinstance(rank, int) or isinstance(rank, bool):
            raise InvalidJudgement(f"rank of {completion_id!r} must be a whole number, got {rank!r}")
        if rank in holder:
            raise InvalidJudgement(f"rank {rank} is given to both {holder[rank]!r} and {completion_id!r}")
        holder[rank] = completion_id
    return [holder[rank] for rank in sorted(holder)]


class RankingsDataset(AppendOnlyJsonl):
    """The judgements of one JSONL file, newest per key; `malformed` lists the lines skipped on reading."""

    def __init__(self, path: str | Path) -> None:
        self._latest: dict[JudgementKey, Judgement] = {}
        super().__init__(path)

    def __len__(self) -> int:
        return len(self._latest)

    def __iter__(self) -> Iterator[Judgement]:
        return iter(self._latest.values())

    def __contains__(self, judgement: Judgement) -> bool:
        stored = self._latest.get(judgement.key)
        return stored is not None and stored.order == judgement.order

    def ranked_prompt_ids(self) -> set[str]:
        return {prompt_id for prompt_id, _ in self._latest}

    def _load(self, record: dict) -> None:
        self._keep(Judgement.from_dict(record))

    def _keep(self, judgement: Judgement) -> None:
        self._latest.pop(judgement.key, None)  # the newest goes last in iteration order
        self._latest[judgement.key] = judgement

    def append_judgements(self, judgements: Iterable[Judgement]) -> int:
        """Store the judgements not already stored (same key and order); durable on return. The count added."""
        with self._appending() as lines:
            for judgement in judgements:
                if judgement not in self:
                    self._keep(judgement)
                    lines.append(judgement.to_json())
        return len(lines)

    def append_judgement(self, judgement: Judgement) -> bool:
        """Store one judgement at once (False when it was already stored)."""
        return self.append_judgements([judgement]) == 1


def first_unranked(prompt_ids: Sequence[str], dataset: RankingsDataset) -> int | None:
    """Index of the first prompt without any judgement (where a re-run resumes), None when all are ranked."""
    ranked = dataset.ranked_prompt_ids()
    return next((n for n, prompt_id in enumerate(prompt_ids) if prompt_id not in ranked), None)
