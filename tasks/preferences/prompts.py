"""Prompts whose completions people rank: one JSON object per line, in the `messages` form or as plain text.

    {"id": "p-1", "messages": [{"role": "system", "content": "..."}, {"role": "user", "content": "..."}]}
    {"prompt": "Write a haiku about rain."}

A line without an `id` gets one from its content ("prompt-<16 hex digits of sha256>"), so the same prompt
keeps its id across runs. Malformed lines (not JSON, no prompt, bad messages, a repeated id) are counted,
skipped and logged with their line numbers.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fineforge.model.chat import ASSISTANT, Conversation
from fineforge.tasks.preferences.importers import content_id
from fineforge.tasks.preferences.jsonl import Malformed, json_objects, log_malformed, open_text

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RankingPrompt:
    """A prompt to sample completions for: its id and its messages (ending before the assistant's reply)."""

    id: str
    messages: list[dict]


@dataclass
class PromptsFile:
    """The prompts read from one file, in file order, and the lines skipped."""

    prompts: list[RankingPrompt] = field(default_factory=list)
    malformed: list[Malformed] = field(default_factory=list)


def prompt_messages(record: dict[str, Any]) -> list[dict]:
    """The messages of one prompt line; a ValueError (the reason) when it holds no usable prompt."""
    if ("messages" in record) == ("prompt" in record):
        raise ValueError("needs either 'messages' or 'prompt'")
    if "prompt" in record:
        if not isinstance(record["prompt"], str) or not record["prompt"].strip():
            raise ValueError("'prompt' must be a non-empty text")
        return [{"role": "user", "content": record["prompt"]}]
    messages = Conversation.from_messages(record["messages"], require_assistant=False).to_messages()
    if messages[-1]["role"] == ASSISTANT:
        raise ValueError("the last message is the assistant's: a prompt ends where the reply begins")
    return messages


def prompt_id(record: dict[str, Any], messages: list[dict]) -> str:
    """The line's own id (a string or an integer), else one derived from the messages."""
    given = record.get("id")
    if given is None:
        return content_id("prompt", messages)
    if isinstance(given, bool) or not isinstance(given, str | int) or not str(given).strip():
        raise ValueError(f"'id' must be a non-empty string or an integer, got {given!r}")
    return str(given)


def read_prompts(path: str | Path) -> PromptsFile:
    """The prompts of a JSONL file (gzipped or not), each id once."""
    result = PromptsFile()
    first_line: dict[str, int] = {}
    with open_text(path) as f:
        for number, record in json_objects(f, result.malformed):
            try:
                messages = prompt_messages(record)
                identifier = prompt_id(record, messages)
            except ValueError as error:
                result.malformed.append(Malformed(number, str(error)))
                continue
            if identifier in first_line:
                result.malformed.append(Malformed(number, f"id {identifier!r} repeats line {first_line[identifier]}"))
                continue
            first_line[identifier] = number
            result.prompts.append(RankingPrompt(identifier, messages))
    result.malformed.sort(key=lambda bad: bad.line)
    log_malformed(path, result.malformed)
    return result
