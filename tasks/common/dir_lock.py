"""One run at a time per work dir or run dir: an exclusive `fcntl.flock` on `<dir>/.fineforge.lock`.

The lock file names its holder (pid and command line), so a second run refuses with a message that says
which process to wait for or stop. The kernel releases the lock when the holder's process ends, however it
ends: a killed run never leaves a stale lock behind.
"""

from __future__ import annotations

import fcntl
import os
import sys
from pathlib import Path

LOCK_FILE = ".fineforge.lock"

_held: dict[Path, int] = {}  # directory -> open lock file descriptor, for the life of this process


class DirectoryLocked(RuntimeError):
    """Another process holds the lock of the directory."""


def holder_command() -> str:
    """This process's command line, as a user typed it (program name without its folder)."""
    return " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv and sys.argv[0] else str(os.getpid())


def lock_directory(directory: str | Path) -> None:
    """Hold the lock of `directory` (created if missing) until this process ends; DirectoryLocked if another
    process holds it. Taking it again in the same process does nothing."""
    directory = Path(directory).resolve()
    if directory in _held:
        return
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 4096).decode(errors="replace").split("\n")  # pid, command line
        os.close(fd)
        who = f"process {holder[0]} ({holder[1]})" if len(holder) > 1 and holder[0] else "another process"
        raise DirectoryLocked(f"{directory} is in use by {who}; wait for it to end or stop it") from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n{holder_command()}\n".encode())
    _held[directory] = fd
