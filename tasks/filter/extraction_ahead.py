"""Run a datatrove extractor (e.g. `Trafilatura`) ahead of the rest of the pipeline, with datatrove's semantics.

datatrove's `BaseExtractor.run` sends one document at a time to a sandbox process and waits for it, so the
sandbox idles while the steps after it (language ID, Gopher, ...) and the reader work, and they idle while it
extracts. Here the same sandbox process receives up to `ahead` documents at once and extracts them in
order while the pipeline goes on; results are taken in order. The output is identical to datatrove's:
- one extraction process sees the same documents in the same order (trafilatura's deduplication cache is
  per process and order-dependent), warmed up with "" like datatrove's sandbox;
- a document whose extraction takes longer than `step.timeout` (measured by the process itself) is
  dropped as "timeout" and, as datatrove does by killing its sandbox, extraction goes on in a fresh
  process: the documents already extracted after it in the old process are extracted again;
- an extraction that raises ends the process, as in datatrove ("broken_process"), same restart.
Statistics go to the step's own `.stats` under datatrove's names.
"""

from __future__ import annotations

import multiprocessing
import queue
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
OOM_SCORE_ADJ = 1000


def _extract_forever(extract, inbox, outbox) -> None:
    try:  # as datatrove's sandbox: under memory pressure, the kernel kills this process first
        with open("/proc/self/oom_score_adj", "w") as score:
            score.write(f"{OOM_SCORE_ADJ}\n")
    except OSError:
        pass
    extract("")  # datatrove's sandbox warm-up
    outbox.put(None)
    while True:
        item = inbox.get()
        if item is None:
            return
        sequence, text = item
        started = time.monotonic()
        result = extract(text)  # an exception ends the process, as in datatrove's sandbox
        outbox.put((sequence, result, time.monotonic() - started))


class _Extraction:
    """One extraction process with its own queues."""

    def __init__(self, extract, timeout: float):
        context = multiprocessing.get_context("fork")
        self.inbox, self.outbox = context.Queue(), context.Queue()
        self.process = context.Process(target=_extract_forever, args=(extract, self.inbox, self.outbox), daemon=True)
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

    def receive(self, timeout: float) -> tuple[int, Any, float] | None:
        """The next result; None when the process died or `timeout` passed without one."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.outbox.get(timeout=max(0.0, min(POLL_SECONDS, deadline - time.monotonic())))
            except queue.Empty:
                if not self.process.is_alive() or time.monotonic() >= deadline:
                    return None

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
            result = extraction.receive(timeout)
            step.stats.time_stats.update(time.monotonic() - waited)
            if result is not None and result[2] <= timeout:
                if result[0] != head_sequence:
                    raise RuntimeError(f"extraction results out of order: {result[0]} != {head_sequence}")
                pending.popleft()
                step.stat_update("extracted")
                document.text = result[1]
                if document.text:
                    step.stat_update(StatHints.forwarded)
                    step.update_doc_stats(document)
                    yield document
                else:
                    step.stat_update(StatHints.dropped)
                continue
            # Too slow, or the process died: drop the document and restart, as datatrove's sandbox does.
            step.stat_update("timeout" if result is not None or extraction.process.is_alive() else "broken_process")
            pending.popleft()
            extraction.close()
            extraction = _Extraction(step.extract, timeout)
            for resend_sequence, resend in pending:
                extraction.send(resend_sequence, resend.text)
    finally:
        extraction.close()
