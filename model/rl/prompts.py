"""The prompt set of RL: JSONL records holding a prompt and what its verifier needs (e.g. `answer`).

Two record forms are read:
- the conversation stage's `train.jsonl` / `val.jsonl` (and any `messages` record): `{"messages": [...],
  "answer": ...}`; the prompt is the conversation without its final assistant turn (the reference solution);
- GSM8K's own lines: `{"question": ..., "answer": "... #### 18"}`; the prompt is the question as a user turn.

The whole record is the verifier's metadata. A line that is not a JSON object, or a record without a
prompt, is an error naming its file and line: the prompt set is checked before launch and nothing is
skipped silently.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fineforge.model.chat import ASSISTANT, USER, ChatFormatError, Conversation
from fineforge.model.config import ConfigError

MAX_PROMPT_SET_BYTES = 1 << 30  # a prompt set is a few MB; refuse anything absurd before reading
SHOWN_PROBLEMS = 3


class PromptSetError(ConfigError):
    """A prompt set that cannot be trained on; the message names the file, the line and the problem."""


@dataclass(frozen=True)
class Prompt:
    """One prompt: its conversation up to the reply, and its record (the verifier's metadata)."""

    messages: Conversation
    metadata: Mapping[str, Any]


def prompt_conversation(record: Mapping[str, Any]) -> Conversation:
    """The conversation to reply to: `messages` without the final assistant turn(s), or `question` as a user turn.

    Raises ChatFormatError (or ValueError) when the record holds neither in a usable form."""
    if "messages" in record:
        messages = record["messages"]
        if isinstance(messages, list):  # the reference reply is not part of the prompt
            end = len(messages)
            while end and isinstance(messages[end - 1], Mapping) and messages[end - 1].get("role") == ASSISTANT:
                end -= 1
            messages = messages[:end]
            if not messages:
                raise ValueError("no turn before the assistant's reply")
        conversation = Conversation.from_messages(messages, require_assistant=False)
        if conversation.messages[-1].role != USER:
            raise ValueError(f"the prompt must end with a user turn, not a {conversation.messages[-1].role} turn")
        return conversation
    if isinstance(record.get("question"), str) and record["question"].strip():
        return Conversation.from_messages([{"role": USER, "content": record["question"]}], require_assistant=False)
    raise ValueError("no 'messages' and no 'question'")


def read_prompt_set(path: str | Path, field: str) -> list[Prompt]:
    """Every prompt of a JSONL file; a PromptSetError naming `field` (e.g. "rl config field 'prompts'") and
    the first bad lines when a line is not a JSON object with a prompt, or when the file holds none."""
    path = Path(path)
    where = f"{field}: {path}"
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise PromptSetError(f"{where}: cannot read the prompt set ({exc.strerror})") from exc
    if size > MAX_PROMPT_SET_BYTES:
        raise PromptSetError(f"{where}: {size} bytes, more than a prompt set can be ({MAX_PROMPT_SET_BYTES})")
    prompts, problems = [], []
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            try:
                record = json.loads(raw.decode("utf-8"))
                if not isinstance(record, dict):
                    raise ValueError(f"a JSON {type(record).__name__}, not an object")
                prompts.append(Prompt(prompt_conversation(record), record))
            except (UnicodeDecodeError, json.JSONDecodeError, ChatFormatError, ValueError) as exc:
                problems.append(f"line {number}: {exc}")
    if problems:
        shown = "; ".join(problems[:SHOWN_PROBLEMS]) + ("; ..." if len(problems) > SHOWN_PROBLEMS else "")
        raise PromptSetError(f"{where}: {len(problems)} bad line(s): {shown}")
    if not prompts:
        raise PromptSetError(f"{where}: no prompts in the file")
    return prompts
