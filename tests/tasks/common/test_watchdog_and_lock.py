"""The watchdog stops the processes a killed parent guarded; the directory lock names its holder and is released
when the holder dies, however it dies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from fineforge.tasks.common.dir_lock import DirectoryLocked, lock_directory
from fineforge.tasks.common.watchdog import start_time

# A parent that starts a child in its own process group (as torchrun is started) and one in its own, guards
# both, prints their pids, and waits to be killed.
PARENT = """
import subprocess, sys, time
from fineforge.tasks.common.watchdog import guard
leader = subprocess.Popen(["sleep", "600"], start_new_session=True)
plain = subprocess.Popen(["sleep", "600"])
guard(leader.pid); guard(plain.pid)
print(leader.pid, plain.pid, flush=True)
time.sleep(600)
"""

HOLDER = """
import sys, time
from fineforge.tasks.common.dir_lock import lock_directory
lock_directory(sys.argv[1])
print("locked", flush=True)
time.sleep(600)
"""


def wait_until_gone(pids: list[int], started: dict[int, int], seconds: float = 30) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if all(start_time(pid) != started[pid] for pid in pids):
            return True
        time.sleep(0.1)
    return False


def test_guarded_children_stop_when_their_parent_is_killed():
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True)
    pids = [int(pid) for pid in parent.stdout.readline().split()]
    started = {pid: start_time(pid) for pid in pids}
    assert all(started.values())
    parent.kill()  # SIGKILL: no handler, no atexit, no finally runs
    parent.wait()
    assert wait_until_gone(pids, started), "a guarded child outlived its killed parent"


def test_a_locked_directory_names_its_holder_until_the_holder_dies(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path / "work"), "--flag"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(DirectoryLocked) as refused:
            lock_directory(tmp_path / "work")
        assert str(refused.value) == (f"{(tmp_path / 'work').resolve()} is in use by process {holder.pid} "
                                      f"(-c {tmp_path / 'work'} --flag); wait for it to end or stop it")
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    lock_directory(tmp_path / "work")  # the kernel released the killed holder's lock
    lock_directory(tmp_path / "work")  # and taking it again in the same process does nothing
