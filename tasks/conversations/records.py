"""Conversation records and JSONL reading that survives bad lines.

A record is what every source yields and what generators write, one JSON object per line:
`{"id", "source", "messages": [{"role", "content"}, ...], "answer"}` (`answer`: the final answer of a
verifiable problem, for RL; null otherwise). A line that is not a JSON object is counted, skipped and
logged with its file and line number; the lines around it are kept.
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MALFORMED_JSON = "malformed_json"
BAD_RECORD = "bad_record"


@dataclass
class ConversationRecord:
    """One conversation of a source, before validation and rendering."""

    id: str
    source: str
    messages: list[Any]
    answer: str | None = None
    origin: str = ""  # file:line or generator, for log messages

    def to_json(self) -> dict:
        """The record as written to JSONL (without its origin)."""
        return {"id": self.id, "source": self.source, "messages": self.messages, "answer": self.answer}


@dataclass
class SourceCounts:
    """What happened to a source's conversations: dropped ones by reason, and changes short of a drop."""

    dropped: Counter = field(default_factory=Counter)
    changed: Counter = field(default_factory=Counter)  # e.g. truncated, calculator annotation stripped


def read_jsonl(path: str | Path, counts: SourceCounts) -> Iterator[tuple[int, dict]]:
    """(line number, object) of each JSON-object line; malformed lines counted as dropped and logged."""
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            try:
                value = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                value, problem = None, str(exc)
            else:
                problem = "" if isinstance(value, dict) else f"a JSON {type(value).__name__}, not an object"
            if problem:
                counts.dropped[MALFORMED_JSON] += 1
                log.warning("%s:%d: malformed JSON line skipped: %s", path, number, problem)
                continue
            yield number, value


def skip(counts: SourceCounts, reason: str, origin: str, detail: str) -> None:
    """Count and log one skipped conversation."""
    counts.dropped[reason] += 1
    log.warning("%s: conversation skipped (%s): %s", origin, reason, detail)


def write_jsonl(path: Path, records: Iterable[ConversationRecord]) -> int:
    """Write records as JSONL atomically; return how many."""
    tmp = path.with_name(f".{path.name}.tmp")
    count = 0
    with open(tmp, "w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record.to_json()) + "\n")  # ASCII: no U+2028 that splitlines() would cut at
            count += 1
    os.replace(tmp, path)
    return count
