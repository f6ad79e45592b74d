"""Existing preference data -> judgements of the rankings dataset.

- hh-rlhf (Anthropic): each line holds a `chosen` and a `rejected` transcript "\\n\\nHuman: ...\\n\\nAssistant: ..."
  that share every turn but the last; the shared turns are the prompt, the two last replies a 2-way ranking.
- OpenAssistant message trees: where a prompter message has at least two assistant replies with a human
  `rank` (0 = best), the path from the root to it is the prompt and its ranked replies a K-way ranking.

Ids are derived from content (hh-rlhf) or taken from the source (OASST message ids), so importing a file
twice stores nothing new. Malformed lines are counted, skipped and logged with their line numbers.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fineforge.tasks.preferences.jsonl import Malformed, json_objects, log_malformed, open_text
from fineforge.tasks.preferences.rankings import InvalidJudgement, Judgement

HH_TURN = re.compile(r"\n\n(Human|Assistant):")
HH_ROLES = {"Human": "user", "Assistant": "assistant"}
OASST_ROLES = {"prompter": "user", "assistant": "assistant"}


@dataclass
class ImportResult:
    """The judgements read from one file and the lines skipped."""

    judgements: list[Judgement] = field(default_factory=list)
    malformed: list[Malformed] = field(default_factory=list)


def content_id(prefix: str, content: Any) -> str:
    """A short stable id of some JSON-serialisable content."""
    digest = hashlib.sha256(json.dumps(content, ensure_ascii=False, sort_keys=True).encode("utf-8")).hexdigest()
    return f"{prefix}-{digest[:16]}"


def parse_hh_transcript(transcript: str) -> list[dict]:
    """Messages of an hh-rlhf transcript; a ValueError when it does not start with a Human turn."""
    parts = HH_TURN.split(transcript)
    if parts[0].strip() or len(parts) < 3 or parts[1] != "Human":
        raise ValueError("a transcript must start with '\\n\\nHuman:'")
    speakers, texts = parts[1::2], parts[2::2]
    return [{"role": HH_ROLES[s], "content": t.strip()} for s, t in zip(speakers, texts, strict=True)]


def hh_judgement(record: Mapping[str, Any], time: str | None = None) -> Judgement:
    """The 2-way ranking of one hh-rlhf line; a ValueError (the reason) when the line cannot be one."""
    chosen, rejected = record.get("chosen"), record.get("rejected")
    if not isinstance(chosen, str) or not isinstance(rejected, str):
        raise ValueError("needs 'chosen' and 'rejected' transcripts")
    chosen_turns, rejected_turns = parse_hh_transcript(chosen), parse_hh_transcript(rejected)
    if chosen_turns[-1]["role"] != "assistant" or rejected_turns[-1]["role"] != "assistant":
        raise ValueError("a transcript does not end with an Assistant reply")
    prompt = chosen_turns[:-1]
    if prompt != rejected_turns[:-1]:
        raise ValueError("chosen and rejected continue different conversations")
    replies = [chosen_turns[-1]["content"], rejected_turns[-1]["content"]]
    if replies[0] == replies[1]:
        raise ValueError("chosen and rejected replies are the same")
    ids = [content_id("hh", reply) for reply in replies]
    return Judgement.create(content_id("hh", prompt), prompt, zip(ids, replies, strict=True), ids, "hh-rlhf", time)


def oasst_judgements(tree: Mapping[str, Any], time: str | None = None) -> Iterator[Judgement]:
    """The K-way rankings of one OpenAssistant message tree (its `prompt` message and the replies below)."""
    stack: list[tuple[Mapping[str, Any], list[dict]]] = [(tree["prompt"], [])]
    while stack:
        message, history = stack.pop()
        path = [*history, {"role": OASST_ROLES[message["role"]], "content": message["text"]}]
        replies = message.get("replies") or []
        ranked = [r for r in replies if r.get("rank") is not None and not r.get("deleted")]
        if message["role"] == "prompter" and len(ranked) >= 2:
            ranks = {r["message_id"]: r["rank"] for r in ranked}
            if len(set(ranks.values())) != len(ranks):
                raise InvalidJudgement(f"replies to message {message['message_id']} repeat a rank: {ranks}")
            order = sorted(ranks, key=ranks.get)
            completions = [(r["message_id"], r["text"]) for r in ranked]
            yield Judgement.create(message["message_id"], path, completions, order, "oasst", time)
        stack.extend((reply, path) for reply in reversed(replies))


def _import(path: str | Path, judgements_of_record) -> ImportResult:
    result = ImportResult()
    with open_text(path) as f:
        for number, record in json_objects(f, result.malformed):
            try:
                result.judgements.extend(judgements_of_record(record))
            except (ValueError, KeyError, TypeError) as error:
                reason = str(error) if isinstance(error, ValueError) else f"missing or wrong field {error}"
                result.malformed.append(Malformed(number, reason))
    result.malformed.sort(key=lambda bad: bad.line)
    log_malformed(path, result.malformed)
    return result


def import_hh_rlhf(path: str | Path) -> ImportResult:
    """Judgements of an hh-rlhf JSONL file (gzipped or not)."""
    return _import(path, lambda record: [hh_judgement(record)])


def import_oasst(path: str | Path) -> ImportResult:
    """Judgements of an OpenAssistant message-tree JSONL file (one tree per line)."""
    return _import(path, lambda record: list(oasst_judgements(record)))
