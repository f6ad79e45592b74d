"""Reading JSONL input line by line: bad lines are counted, skipped and logged with their line numbers."""

from __future__ import annotations

import gzip
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

log = logging.getLogger(__name__)

LOGGED_PER_FILE = 20  # malformed lines logged one by one; the rest only counted


@dataclass(frozen=True)
class Malformed:
    """A skipped input line and why."""

    line: int
    reason: str


def open_text(path: str | Path) -> IO[str]:
    """A text file, gunzipped on the fly when its name ends in .gz."""
    path = Path(path)
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, encoding="utf-8")


def json_objects(lines: Iterator[str], malformed: list[Malformed], first_line: int = 1) -> Iterator[tuple[int, dict]]:
    """(line number, object) of each line that is a JSON object; the others go to `malformed`.
    Blank lines are skipped silently."""
    for number, line in enumerate(lines, first_line):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            malformed.append(Malformed(number, f"not JSON ({error.msg})"))
            continue
        if not isinstance(record, dict):
            malformed.append(Malformed(number, f"a JSON {type(record).__name__}, not an object"))
            continue
        yield number, record


def log_malformed(source: str | Path, malformed: list[Malformed]) -> None:
    """Log skipped lines with their numbers (the first LOGGED_PER_FILE one by one, then a count)."""
    for bad in malformed[:LOGGED_PER_FILE]:
        log.warning("%s line %d skipped: %s", source, bad.line, bad.reason)
    if len(malformed) > LOGGED_PER_FILE:
        log.warning("%s: %d more malformed lines skipped", source, len(malformed) - LOGGED_PER_FILE)
