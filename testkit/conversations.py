"""A small real conversation shard set (bytes tokenizer) for SFT tests, built by the conversation stage."""

from __future__ import annotations

from pathlib import Path

from fineforge.tasks.conversations.config import ConversationsConfig
from fineforge.tasks.conversations.job import build_conversations

ASSISTANT_NAME = "Forge"


def chat_conversations_config(workdir: Path, name: str = "chat", count: int = 120, context_length: int = 160,
                              tokenizer: str = "bytes") -> ConversationsConfig:
    """English identity conversations of at most `context_length` tokens (longer ones are dropped)."""
    return ConversationsConfig.model_validate({
        "workdir": str(workdir), "name": name, "tokenizer": tokenizer, "context_length": context_length,
        "too_long": "drop", "val_fraction": 0.25, "seed": 0,
        "sources": [{"kind": "identity", "assistant_name": ASSISTANT_NAME, "maker": "Acme Labs", "count": count,
                     "languages": ["en"]}],
    })  # fmt: skip


def write_chat_conversations(workdir: Path, **settings) -> Path:
    """Build `chat_conversations_config(workdir, **settings)`; returns the shard set's folder."""
    config = chat_conversations_config(workdir, **settings)
    build_conversations(config)
    return Path(config.workdir) / "conversations" / config.name
