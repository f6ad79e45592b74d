"""The per-conversation part of the stage: validate, render with the chat format, fit the context.

Pure Python and numpy; a conversation that cannot be used is counted under its reason and logged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from fineforge.model.chat import ASSISTANT, SYSTEM, ChatFormatError, ChatTemplate, Conversation
from fineforge.tasks.conversations.records import ConversationRecord, SourceCounts, skip

TooLong = Literal["truncate", "drop"]  # what to do with a conversation longer than the context
TOO_LONG = "too_long"
TRUNCATED = "truncated"


@dataclass
class RenderedConversation:
    """A record with its ids and loss mask (the record's messages are what was rendered)."""

    record: ConversationRecord
    ids: np.ndarray  # uint32
    mask: np.ndarray  # uint8, 1: a training target

    @property
    def trainable_tokens(self) -> int:
        return int(np.count_nonzero(self.mask))


def with_system(messages: object, system: str | None) -> object:
    """The messages with `system` first, unless they already start with a system message."""
    if system is None or not isinstance(messages, list):
        return messages
    if messages and isinstance(messages[0], dict) and messages[0].get("role") == SYSTEM:
        return messages
    return [{"role": SYSTEM, "content": system}, *messages]


def fit_context(
    turns: list[tuple[list[int], list[int]]], roles: list[str], context_length: int, too_long: TooLong
) -> int:
    """How many turns to keep: all when they fit; with "truncate" the most that fit and end with an
    assistant turn that has trainable tokens; 0 when nothing can be kept."""
    lengths = np.cumsum([len(ids) for ids, _ in turns])
    if lengths[-1] <= context_length:
        return len(turns)
    if too_long == "drop":
        return 0
    for keep in range(int(np.searchsorted(lengths, context_length, side="right")), 0, -1):
        if roles[keep - 1] == ASSISTANT and any(turns[keep - 1][1]):
            return keep
    return 0


def render_record(
    record: ConversationRecord,
    template: ChatTemplate,
    context_length: int,
    too_long: TooLong,
    counts: SourceCounts,
) -> RenderedConversation | None:
    """Validate and render one record; None (counted by reason) when it is unusable or too long."""
    try:
        conversation = Conversation.from_messages(record.messages)
    except ChatFormatError as exc:
        skip(counts, exc.reason, record.origin, str(exc))
        return None
    turns = [template.render_message(m) for m in conversation.messages]
    keep = fit_context(turns, [m.role for m in conversation.messages], context_length, too_long)
    if keep == 0:
        total = sum(len(ids) for ids, _ in turns)
        skip(counts, TOO_LONG, record.origin, f"{total} tokens, context {context_length} ({too_long})")
        return None
    if keep < len(turns):
        counts.changed[TRUNCATED] += 1
    record.messages = conversation.to_messages()[:keep]
    ids = np.array([i for turn_ids, _ in turns[:keep] for i in turn_ids], dtype=np.uint32)
    mask = np.array([m for _, turn_mask in turns[:keep] for m in turn_mask], dtype=np.uint8)
    return RenderedConversation(record, ids, mask)
