"""Run a datatrove extractor (e.g. `Trafilatura`) ahead of the rest of the pipeline, under a CPU-time budget.

datatrove's `BaseExtractor.run` sends one document at a time to a sandbox process and waits for it, so the
sandbox idles while the steps after it (language ID, Gopher, ...) and the reader work, and they idle while it
extracts. Here the same sandbox process receives up to `ahead` documents at once and extracts them in
order while the pipeline goes on; results are taken in order. The output is datatrove's:
- one extraction process sees the same documents in the same order (trafilatura's deduplication cache is
  per process and order-dependent), warmed up with "" like datatrove's sandbox;
- a document whose extraction exceeds `step.timeout` is dropped as "timeout" and, as datatrove does by
  killing its sandbox, extraction goes on in a fresh process: the documents already extracted after it in
  the old process are extracted again;
- an extraction that raises ends the process, as in datatrove ("broken_process"), same restart.
One deliberate difference: `step.timeout` is a budget of CPU seconds used by the extracting thread, not
datatrove's wall-clock seconds, so whether a page times out does not depend on what else the machine runs
(the same input gives the same output and statistics on an idle and on a saturated machine). It is enforced
by a CPU-time timer (SIGPROF) inside the process and, for C code that does not return to Python, by the
kernel's RLIMIT_CPU a few seconds later. Statistics go to the step's own `.stats` under datatrove's names; the
CPU time of every page goes to `step.cpu_time_histogram` when the step has one.
"""

from __future__ import annotations

import math
import multiprocessing
import queue
import resource
import signal
import time
from collections import deque
from collections.abc import Iterable, Iterator
from typing import Any

from datatrove.data import Document
from datatrove.utils.typeshelper import StatHints

# Documents handed to the extraction process before their results are needed.
DEFAULT_AHEAD = 64
# How often the waiting side checks that the extraction process is alive (seconds).
POLL_SECONDS = 0.5
# Least time given to a fresh extraction process to import and warm up (a loaded machine can be slow).
MIN_WARMUP_SECONDS = 120.0
# Wall-clock seconds without any result after which a live extraction process is taken for hung (it is not
# computing: a budget of CPU time ends any computation long before).
HUNG_SECONDS = 900.0
# CPU seconds past the budget after which the kernel ends a process stuck in C code (RLIMIT_CPU, SIGXCPU).
KERNEL_GRACE_SECONDS = 5
OOM_SCORE_ADJ = 1000


class _OverBudget(BaseException):
    """Raised inside the extraction when it has used its CPU budget (a BaseException: nothing swallows it)."""


class _CpuBudget:
    """Stops one extraction after `seconds` of CPU time of the calling thread."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.started = 0.0
        self.armed = False
        signal.signal(signal.SIGPROF, self._on_timer)

    def used(self) -> float:
        return time.thread_time() - self.started

    def _on_timer(self, signum, frame) -> None:
        if not self.armed:
            return
        remaining = self.seconds - self.used()
        if remaining > 0:  # the timer counts every thread of the process: re-arm for what is left
            signal.setitimer(signal.ITIMER_PROF, remaining)
            return
        raise _OverBudget

    def run(self, extract, text: str) -> tuple[Any, float, bool]:
        """(result, CPU seconds used, over budget) of `extract(text)`."""
        process_cpu = sum(resource.getrusage(resource.RUSAGE_SELF)[:2])
        limit = math.ceil(process_cpu + self.seconds) + KERNEL_GRACE_SECONDS
        hard = resource.getrlimit(resource.RLIMIT_CPU)[1]
        if hard != resource.RLIM_INFINITY:  # a soft limit cannot be raised above the hard one
            limit = min(limit, hard)
        resource.setrlimit(resource.RLIMIT_CPU, (limit, hard))
        self.started, self.armed, result = time.thread_time(), True, None
        try:
            try:
                signal.setitimer(signal.ITIMER_PROF, self.seconds)
                result = extract(text)  # another exception ends the process, as in datatrove's sandbox
            finally:
                self.armed = False
                signal.setitimer(signal.ITIMER_PROF, 0)
        except _OverBudget:
            pass
        used = self.used()
        return result, used, used > self.seconds


def _extract_forever(extract, budget_seconds: float, inbox, outbox) -> None:
    try:  # as datatrove's sandbox: under memory pressure, the kernel kills this process first
        with open("/proc/self/oom_score_adj", "w") as score:
            score.write(f"{OOM_SCORE_ADJ}\n")
    except OSError:
        pass
    extract("")  # datatrove's sandbox warm-up
    budget = _CpuBudget(budget_seconds)
    outbox.put(None)
    while True:
        item = inbox.get()
        if item is None:
            return
        sequence, text = item
        result, used, over_budget = budget.run(extract, text)
        outbox.put((sequence, None if over_budget else result, used, over_budget))
        if over_budget:  # the extraction may have been stopped halfway: a fresh process goes on
            return


class _Extraction:
    """One extraction process with its own queues."""

    def __init__(self, extract, timeout: float):
        context = multiprocessing.get_context("fork")
        self.inbox, self.outbox = context.Queue(), context.Queue()
        self.process = context.Process(
            target=_extract_forever, args=(extract, timeout, self.inbox, self.outbox), daemon=True
        )
        self.process.start()
        self._wait_ready(max(timeout, MIN_WARMUP_SECONDS))

    def _wait_ready(self, timeout: float) -> None:
        try:
            self.outbox.get(timeout=timeout)
        except queue.Empty:
            self.close()
            raise TimeoutError(f"extraction process failed to warm up within {timeout} seconds") from None

    def send(self, sequence: int, text: str) -> None:
        self.inbox.put((sequence, text))

    def receive(self) -> tuple[int, Any, float, bool] | None:
        """The next result; None when the process died or gave nothing for HUNG_SECONDS."""
        deadline = time.monotonic() + HUNG_SECONDS
        while True:
            try:
                return self.outbox.get(timeout=POLL_SECONDS)
            except queue.Empty:
                if not self.process.is_alive() or time.monotonic() >= deadline:
                    return None

    def killed_by_cpu_limit(self) -> bool:
        """True when the kernel ended the process for exceeding its CPU-time limit."""
        self.process.join(timeout=POLL_SECONDS)
        return self.process.exitcode == -signal.SIGXCPU

    def close(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join()
        for q in (self.inbox, self.outbox):
            q.cancel_join_thread()
            q.close()


def run_extractor_ahead(step, data: Iterable[Document], ahead: int = DEFAULT_AHEAD) -> Iterator[Document]:
    """Yield `data`'s documents with `step.extract` applied, dropping empty results, like `step.run`."""
    timeout = step.timeout
    histogram = getattr(step, "cpu_time_histogram", None)
    pending: deque[tuple[int, Document]] = deque()
    documents = iter(data)
    extraction = _Extraction(step.extract, timeout)
    sequence = 0
    exhausted = False
    try:
        while pending or not exhausted:
            while not exhausted and len(pending) < ahead:
                document = next(documents, None)
                if document is None:
                    exhausted = True
                    break
                step.stat_update(StatHints.total)
                pending.append((sequence, document))
                extraction.send(sequence, document.text)
                sequence += 1
            if not pending:
                break
            head_sequence, document = pending[0]
            waited = time.monotonic()
            # Earlier results were all taken: the process is on this document, or done with it.
            result = extraction.receive()
            step.stats.time_stats.update(time.monotonic() - waited)
            if result is not None and result[0] != head_sequence:
                raise RuntimeError(f"extraction results out of order: {result[0]} != {head_sequence}")
            pending.popleft()
            if result is not None and histogram is not None:
                histogram.add(result[2])
            if result is not None and not result[3]:
                step.stat_update("extracted")
                document.text = result[1]
                if document.text:
                    step.stat_update(StatHints.forwarded)
                    step.update_doc_stats(document)
                    yield document
                else:
                    step.stat_update(StatHints.dropped)
                continue
            # Over budget, or the process died: drop the document and restart, as datatrove's sandbox does.
            over_budget = result is not None or extraction.killed_by_cpu_limit()
            step.stat_update("timeout" if over_budget else "broken_process")
            extraction.close()
            extraction = _Extraction(step.extract, timeout)
            for resend_sequence, resend in pending:
                extraction.send(resend_sequence, resend.text)
    finally:
        extraction.close()
