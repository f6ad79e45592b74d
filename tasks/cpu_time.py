"""CPU time of this process and everything it started: the "cost" of a stage run on this machine.

A stage's CPU is spread over processes: this one, Spark's JVM and its Python workers (alive between stages),
torchrun and its workers (ended and waited for). The total counts this process, its ended-and-waited-for
descendants (`RUSAGE_CHILDREN`) and its live descendants, so the difference of two readings is what ran in
between, whichever process ran it.
"""

from __future__ import annotations

import resource
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import psutil


def process_tree_cpu_seconds() -> float:
    """User + system CPU seconds of this process, its ended descendants and its live descendants."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    for child in psutil.Process().children(recursive=True):
        try:
            times = child.cpu_times()
        except psutil.Error:  # ended meanwhile: counted by its parent's RUSAGE_CHILDREN once waited for
            continue
        total += times.user + times.system
    return total


@dataclass
class Usage:
    """Wall and CPU seconds of a stretch of work (filled in when it ends)."""

    wall_seconds: float = 0.0
    cpu_seconds: float = 0.0


@contextmanager
def measured() -> Iterator[Usage]:
    """Measure the wall and process-tree CPU time of the block."""
    usage = Usage()
    wall, cpu = time.monotonic(), process_tree_cpu_seconds()
    try:
        yield usage
    finally:
        usage.wall_seconds = round(time.monotonic() - wall, 3)
        usage.cpu_seconds = round(process_tree_cpu_seconds() - cpu, 3)
