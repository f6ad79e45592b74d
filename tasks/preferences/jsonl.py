"""Reading JSONL input line by line (bad lines are counted, skipped and logged with their line numbers), and
append-only JSONL files whose every append is durable when it returns."""

from __future__ import annotations

import fcntl
import gzip
import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
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


class AppendOnlyJsonl:
    """A JSONL file that only grows, read incrementally: each append holds an exclusive lock, first reads what
    other processes wrote, and is fsynced before it returns. Subclasses keep the records in `_load`."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.malformed: list[Malformed] = []
        self._offset = 0  # bytes of the file already read
        self._lines = 0
        self.refresh()

    def _load(self, record: dict) -> None:
        """Keep one record read from the file; a ValueError (the reason) skips it as malformed."""
        raise NotImplementedError

    def refresh(self) -> None:
        """Read the records appended since the last read (by other processes too)."""
        if self.path.exists():
            with open(self.path, "rb") as f:
                fcntl.flock(f, fcntl.LOCK_SH)  # no writer is half-way through a line while we read
                self._read_new(f)

    def _read_new(self, f) -> None:
        f.seek(self._offset)
        data = f.read()
        self._offset += len(data)
        new: list[Malformed] = []
        # split on newlines only: texts may hold other line separators (U+2028) that splitlines() would cut at
        lines = data.decode("utf-8", errors="replace").split("\n")
        if lines[-1] == "":
            lines.pop()
        for number, record in json_objects(iter(lines), new, first_line=self._lines + 1):
            try:
                self._load(record)
            except ValueError as error:
                new.append(Malformed(number, str(error)))
        self._lines += len(lines)
        log_malformed(self.path, new)
        self.malformed.extend(new)

    @contextmanager
    def _appending(self) -> Iterator[list[str]]:
        """Lock the file and read what others appended; the JSON lines put into the yielded list are then
        written and fsynced (a new file's directory entry too) before the block ends."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        created = not self.path.exists()
        with open(self.path, "a+b") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            self._read_new(f)
            lines: list[str] = []
            yield lines
            if lines:
                # end a line cut short by a crash first, so that it does not swallow the first new record
                data = ("\n" if _ends_mid_line(f) else "") + "\n".join(lines) + "\n"
                f.write(data.encode("utf-8"))
                f.flush()
                os.fsync(f.fileno())
                self._offset = f.tell()
                self._lines += len(lines)
        if created:
            _fsync_directory(self.path.parent)


def _ends_mid_line(f) -> bool:
    if f.seek(0, os.SEEK_END) == 0:
        return False
    f.seek(-1, os.SEEK_END)
    return f.read(1) != b"\n"


def _fsync_directory(directory: Path) -> None:
    """Make a new file's directory entry durable too."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
