"""Where one task's time goes, step by step: wall and CPU milliseconds per document of each step of a generator
chain.

Each step's output is wrapped in a clock that adds up the time spent getting its next document; that time
includes the steps before it, so a step's own time is its clock minus the previous one. The reader is the first
clock, the writer the last; the own times add up to the whole run. The CPU clock is the process's own: work done
in a subprocess (both sides extract in one) shows in the wall column only, as the time spent waiting for it.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field


@dataclass
class StepClock:
    """Cumulative seconds to the output of each named step, in pipeline order."""

    seconds: dict[str, float] = field(default_factory=dict)
    cpu_seconds: dict[str, float] = field(default_factory=dict)  # this process's CPU (not its subprocesses')
    documents: dict[str, int] = field(default_factory=dict)

    def timed(self, documents: Iterable, name: str) -> Iterator:
        """`documents`, with the time spent getting each one added to `name`'s clock (registered now, so the
        clocks are in pipeline order)."""
        self.seconds.setdefault(name, 0.0)
        self.cpu_seconds.setdefault(name, 0.0)
        self.documents.setdefault(name, 0)
        return self._timed(iter(documents), name)

    def _timed(self, iterator: Iterator, name: str) -> Iterator:
        while True:
            started, cpu_started = time.perf_counter(), time.process_time()
            try:
                document = next(iterator)
            except StopIteration:
                self._add(name, started, cpu_started)
                return
            self._add(name, started, cpu_started)
            self.documents[name] += 1
            yield document

    def _add(self, name: str, started: float, cpu_started: float) -> None:
        self.seconds[name] += time.perf_counter() - started
        self.cpu_seconds[name] += time.process_time() - cpu_started

    def own_ms_per_document(self, documents_in: int, cpu: bool = False) -> dict[str, float]:
        """Each step's own wall (or CPU) milliseconds per input document (its clock minus the previous step's)."""
        own, before = {}, 0.0
        for name, seconds in (self.cpu_seconds if cpu else self.seconds).items():
            own[name] = 1000 * (seconds - before) / max(documents_in, 1)
            before = seconds
        return own


def drain(documents: Iterable) -> int:
    """Consume a pipeline; the number of documents that came out."""
    return sum(1 for _ in documents)


def profile_table(profiles: dict[str, tuple[StepClock, str]], order: list[str]) -> list[str]:
    """Lines of a table: one row per step of `order`, one column of ms/document per side (`-`: not a step of it).

    `profiles` maps a side to its clock and the name of its first (reader) step, whose count is the input."""
    columns = {f"{side} {kind}": clock.own_ms_per_document(clock.documents[first], cpu=kind == "CPU")
               for side, (clock, first) in profiles.items() for kind in ("wall", "CPU")}
    width = max(len(name) for name in order)
    lines = [f"{'step':<{width}}  " + "  ".join(f"{column:>15}" for column in columns)]
    for name in [*order, "total"]:
        cells = []
        for own in columns.values():
            value = sum(own.values()) if name == "total" else own.get(name)
            cells.append(f"{value:15.2f}" if value is not None else f"{'-':>15}")
        lines.append(f"{name:<{width}}  " + "  ".join(cells))
    counts = ", ".join(f"{side} {clock.documents[first]}" for side, (clock, first) in profiles.items())
    lines.append(f"(ms per document read; documents read: {counts})")
    return lines
