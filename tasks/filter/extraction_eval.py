"""Evaluate main-text extraction on labelled pages: precision, recall, F1 and CPU milliseconds per page.

The labels are trafilatura's evaluation format: for each page URL, snippets that a good extraction must
contain (`with`) and must not contain (`without`). A `with` snippet found is a true positive, one missed a
false negative; a `without` snippet found is a false positive (whitespace runs count as one space). Pages
come from a WARC file (matched by URL) through the stage's own reader, so the HTML is decoded as in the
data build. Extraction runs in this process, in page order, one method after the other; its CPU time
(`time.thread_time`) is measured per page. Pages are split into a tuning part and a held-out part by a hash
of their URL, so a method designed on one can be checked on the other.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from fineforge.tasks.filter.extraction import extract_main_text
from fineforge.tasks.filter.warc_records import iter_html_documents

HELD_OUT_SHARE = 5  # one page in five (by URL hash) is held out
SPLITS = ("all", "tune", "held-out")
_WHITESPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class LabelledPage:
    """One page's HTML with the snippets its main text must and must not contain."""

    url: str
    html: str
    must: tuple[str, ...]
    must_not: tuple[str, ...]


@dataclass(frozen=True)
class Scores:
    """Snippet counts of one method over a set of pages."""

    true_positives: int
    false_negatives: int
    false_positives: int
    true_negatives: int

    @property
    def precision(self) -> float:
        found = self.true_positives + self.false_positives
        return self.true_positives / found if found else 0.0

    @property
    def recall(self) -> float:
        wanted = self.true_positives + self.false_negatives
        return self.true_positives / wanted if wanted else 0.0

    @property
    def f1(self) -> float:
        total = self.precision + self.recall
        return 2 * self.precision * self.recall / total if total else 0.0


@dataclass(frozen=True)
class MethodResult:
    """A method's scores and CPU cost on one split."""

    method: str
    fallbacks: bool
    split: str
    pages: int
    scores: Scores
    cpu_ms_per_page: float

    @property
    def label(self) -> str:
        return self.method if self.fallbacks else f"{self.method} (no fallbacks)"


def normalized(text: str | None) -> str:
    """Whitespace runs as one space, stripped ('' for None)."""
    return _WHITESPACE.sub(" ", text or "").strip()


def is_held_out(url: str) -> bool:
    """True for the held-out part of the pages (a stable hash of the URL)."""
    return int(hashlib.sha256(url.encode("utf-8")).hexdigest(), 16) % HELD_OUT_SHARE == 0


def in_split(url: str, split: str) -> bool:
    """True when the page of `url` belongs to `split` (all, tune or held-out)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; one of {', '.join(SPLITS)}")
    return split == "all" or is_held_out(url) == (split == "held-out")


def load_labelled_pages(warcs: Path | list[Path], labels: Path) -> tuple[list[LabelledPage], int]:
    """The labelled pages found in `warcs` (in file order), and how many labelled URLs they lack."""
    entries = {url.strip(): entry for url, entry in json.loads(Path(labels).read_text()).items()}
    pages, seen = [], set()
    for warc in [warcs] if isinstance(warcs, Path) else warcs:
        for document in iter_html_documents(str(warc), Counter()):
            url = document.metadata["url"].strip()
            entry = entries.get(url)
            if entry is not None and url not in seen:
                seen.add(url)
                pages.append(LabelledPage(url, document.text, tuple(entry["with"]), tuple(entry["without"])))
    return pages, len(entries) - len(seen)


def page_scores(text: str | None, page: LabelledPage) -> Scores:
    """Snippet counts of one extracted text."""
    found = normalized(text)
    hits = sum(normalized(snippet) in found for snippet in page.must)
    leaks = sum(normalized(snippet) in found for snippet in page.must_not)
    return Scores(hits, len(page.must) - hits, leaks, len(page.must_not) - leaks)


def total(scores: list[Scores]) -> Scores:
    """The sum of several Scores."""
    return Scores(*(sum(getattr(s, field) for s in scores) for field in Scores.__dataclass_fields__))


def evaluate(pages: list[LabelledPage], method: str, fallbacks: bool = True) -> dict[str, MethodResult]:
    """Extract every page with `method` (in order, one process); the result on each split.

    trafilatura's caches (its deduplication cache above all) are emptied first, so each method starts as a
    fresh extraction process does: otherwise a method would find the segments an earlier one saw
    "duplicated" and score lower for running later.
    """
    from trafilatura.meta import reset_caches

    reset_caches()
    extract_main_text("", method, fallbacks)  # warm-up, as the extraction process does
    measured: list[tuple[str, Scores, float]] = []
    for page in pages:
        started = time.thread_time()
        text = extract_main_text(page.html, method, fallbacks)
        measured.append((page.url, page_scores(text, page), time.thread_time() - started))
    results = {}
    for split in SPLITS:
        chosen = [(scores, cpu) for url, scores, cpu in measured if in_split(url, split)]
        cpu_ms = 1000 * sum(cpu for _, cpu in chosen) / max(len(chosen), 1)
        results[split] = MethodResult(method, fallbacks, split, len(chosen), total([s for s, _ in chosen]), cpu_ms)
    return results


def results_table(results: list[MethodResult], baseline: str = "fineweb") -> list[list[str]]:
    """Rows (header first) of a side-by-side table; cost relative to the `baseline` method on the same split."""
    base = {r.split: r.cpu_ms_per_page for r in results if r.method == baseline and r.fallbacks}
    rows = [["method", "split", "pages", "precision", "recall", "F1", "CPU ms/page", f"cost / {baseline}"]]
    for r in results:
        ratio = f"{r.cpu_ms_per_page / base[r.split]:.2f}" if base.get(r.split) else "-"
        rows.append([r.label, r.split, str(r.pages), f"{r.scores.precision:.3f}", f"{r.scores.recall:.3f}",
                     f"{r.scores.f1:.3f}", f"{r.cpu_ms_per_page:.1f}", ratio])  # fmt: skip
    return rows
