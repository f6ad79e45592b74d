"""OpenAssistant conversation trees -> each tree's best-ranked path.

A line of an OASST trees export is {"message_tree_id", "prompt": message}; a message has "role"
("prompter" or "assistant"), "text", and "replies" (its children). Sibling replies carry a human "rank"
(0 = best) where people ranked them; a lone reply, and prompter replies, have none. The path starts at
the prompt and at every level takes the best reply: the lowest rank, unranked replies after ranked ones,
ties in file order; deleted replies and replies that failed review are never taken. A trailing prompter
message (a question nobody answered) is dropped, so the path ends with the assistant.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from fineforge.model.chat import ASSISTANT, USER
from fineforge.tasks.conversations.records import BAD_RECORD, ConversationRecord, SourceCounts, read_jsonl, skip

OASST_ROLES = {"prompter": USER, "assistant": ASSISTANT}


def _usable(message: dict) -> bool:
    return isinstance(message, dict) and not message.get("deleted") and message.get("review_result") is not False


def best_reply(message: dict) -> dict | None:
    """The best-ranked usable reply of a message, or None at a leaf."""
    replies = [r for r in message.get("replies") or [] if _usable(r)]
    if not replies:
        return None
    ranked = [(r["rank"] if isinstance(r.get("rank"), int) else float("inf"), i) for i, r in enumerate(replies)]
    return replies[min(ranked)[1]]


def best_path(prompt: dict) -> list[dict]:
    """The messages form of the best-ranked path from the prompt, ending with an assistant message."""
    path, message = [], prompt if _usable(prompt) else None
    while message is not None:
        role = message.get("role")
        path.append({"role": OASST_ROLES.get(role, role), "content": message.get("text")})
        message = best_reply(message)
    while len(path) > 1 and path[-1]["role"] == USER:  # a lone prompt stays: counted as no_assistant_turn
        path.pop()
    return path


def oasst_conversations(path: str | Path, source: str, counts: SourceCounts) -> Iterator[ConversationRecord]:
    """One record per tree: its best-ranked path."""
    for number, tree in read_jsonl(path, counts):
        origin = f"{path}:{number}"
        prompt = tree.get("prompt")
        if not isinstance(prompt, dict):
            skip(counts, BAD_RECORD, origin, "no prompt message")
            continue
        tree_id = str(tree.get("message_tree_id") or prompt.get("message_id") or f"line-{number}")
        yield ConversationRecord(id=tree_id, source=source, messages=best_path(prompt), origin=origin)
