"""A user's JSONL conversations: `{"messages": [...]}` per line, or `{"prompt", "response"}`.

Optional keys: "id" (default `<source>-<line>`), "answer" (a verifiable final answer), "system" (with
prompt/response: a system message first). `roles` renames the file's roles to fineforge's (e.g.
{"human": "user", "gpt": "assistant"}); roles still unknown after that skip the conversation, counted.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from fineforge.model.chat import ASSISTANT, SYSTEM, USER
from fineforge.tasks.conversations.records import BAD_RECORD, ConversationRecord, SourceCounts, read_jsonl, skip


def record_messages(record: dict, roles: Mapping[str, str]) -> list[Any] | None:
    """The record's messages with roles renamed, or None when it has neither messages nor prompt/response."""
    if "messages" in record:
        messages = record["messages"]
        if not isinstance(messages, list):
            return messages  # validation rejects it with its reason
        return [_renamed(m, roles) for m in messages]
    prompt, response = record.get("prompt"), record.get("response")
    if not (isinstance(prompt, str) and isinstance(response, str)):
        return None
    system = [{"role": SYSTEM, "content": record["system"]}] if isinstance(record.get("system"), str) else []
    return [*system, {"role": USER, "content": prompt}, {"role": ASSISTANT, "content": response}]


def _renamed(message: Any, roles: Mapping[str, str]) -> Any:
    if isinstance(message, dict) and isinstance(message.get("role"), str) and message["role"] in roles:
        return {**message, "role": roles[message["role"]]}
    return message


def jsonl_conversations(
    path: str | Path, source: str, roles: Mapping[str, str], counts: SourceCounts
) -> Iterator[ConversationRecord]:
    """One record per line in messages or prompt/response form."""
    for number, record in read_jsonl(path, counts):
        origin = f"{path}:{number}"
        messages = record_messages(record, roles)
        if messages is None:
            skip(counts, BAD_RECORD, origin, "needs 'messages' or a string 'prompt' and 'response'")
            continue
        answer = record.get("answer")
        yield ConversationRecord(
            id=str(record.get("id", f"{source}-{number}")), source=source, messages=messages,
            answer=None if answer is None else str(answer), origin=origin,
        )
