"""Child processes that stop when this process ends, however it ends (SIGKILL included).

`guard(pid)` hands a child process (torchrun, Prefect's temporary server) to a watchdog: a small process,
started on first use in its own session, that reads a pipe whose write end only this process holds. When
this process ends, normally or killed, the kernel closes that end; the watchdog reads end-of-file and
stops every guarded child that still runs: SIGTERM (to its whole process group when it leads one), then
SIGKILL after `GRACE_SECONDS`. A child is known by its pid and start time, so a reused pid is never hit.
Linux only (/proc); elsewhere `guard` does nothing. Standard library only: the watchdog starts in a blink.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

GRACE_SECONDS = 40.0  # torchrun gives its workers 30 s after a SIGTERM before it kills them
POLL_SECONDS = 0.2

_pipe: int | None = None  # write end of the pipe the watchdog reads, held by this process only
_pipe_lock = threading.Lock()  # launches from several threads share one watchdog


def start_time(pid: int) -> int | None:
    """The start time of process `pid` (clock ticks since boot), None when there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # the command name, in parentheses, may hold spaces
    return None if fields[0] == "Z" else int(fields[19])  # a zombie has ended: only its exit status is left


def guard(pid: int) -> None:
    """Stop process `pid` (and its process group, if it leads one) when this process ends."""
    global _pipe
    started = start_time(pid)
    if started is None:
        return
    with _pipe_lock:
        if _pipe is None:
            _pipe = _start_watchdog()
        os.write(_pipe, f"{pid} {started}\n".encode())


def _start_watchdog() -> int:
    read_end, write_end = os.pipe()  # not inherited by other children: only the watchdog gets the read end
    subprocess.Popen(
        [sys.executable, "-m", __name__, str(read_end)], pass_fds=(read_end,), stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    os.close(read_end)
    return write_end


def _signal(pid: int, signum: int) -> None:
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, signum)
        else:
            os.kill(pid, signum)
    except ProcessLookupError:
        pass


def stop_processes(guarded: dict[int, int], grace: float = GRACE_SECONDS) -> list[int]:
    """SIGTERM each process of {pid: start time} that still runs, SIGKILL those left after `grace` seconds;
    return the pids that were signalled."""
    running = [pid for pid, started in guarded.items() if start_time(pid) == started]
    for pid in running:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    left = running
    while left and time.monotonic() < deadline:
        time.sleep(POLL_SECONDS)
        left = [pid for pid in left if start_time(pid) == guarded[pid]]
    for pid in left:
        _signal(pid, signal.SIGKILL)
    return running


def watch(read_end: int) -> None:
    """Collect guarded processes from the pipe until its writer has ended, then stop them."""
    guarded: dict[int, int] = {}
    with os.fdopen(read_end, "rb") as pipe:
        for line in pipe:
            pid, started = map(int, line.split())
            guarded[pid] = started
    stop_processes(guarded)


if __name__ == "__main__":
    watch(int(sys.argv[1]))
