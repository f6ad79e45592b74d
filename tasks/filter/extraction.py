"""Main-text extraction from HTML: trafilatura (three settings, fallbacks on or off), resiliparse, or both.

`MainTextExtractor` is a datatrove extractor step (so it runs in the look-ahead sandbox of
`extraction_ahead`, under a CPU-time budget); `extract_main_text` is the same extraction as a plain function,
for the evaluation (`extraction_eval`). Methods (`ExtractionSettings.method`):
- `fineweb`: exactly datatrove's `Trafilatura` step as FineWeb runs it (favour precision, no comments);
- `trafilatura`, `trafilatura-recall`: trafilatura's default and recall settings, no comments;
- `resiliparse`: resiliparse's main-content extraction with DCLM's options (about 10x faster);
- `trafilatura-resiliparse`: trafilatura's default settings, and resiliparse's main content for the pages
  where trafilatura finds none (about 1 %): the best F1 measured (docs/extraction.md), at trafilatura's cost.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable
from typing import Any

from datatrove.pipeline.extractors.base import BaseExtractor

# trafilatura's settings per method (comments are always left out, as datatrove does).
TRAFILATURA_METHODS: dict[str, dict[str, bool]] = {
    "fineweb": {"favor_precision": True},
    "trafilatura": {},
    "trafilatura-recall": {"favor_recall": True},
}
COMBINED_METHOD = "trafilatura-resiliparse"
EXTRACTION_METHODS = (*TRAFILATURA_METHODS, "resiliparse", COMBINED_METHOD)
# DCLM's resiliparse options (main content, no alt texts, links or form fields).
RESILIPARSE_OPTIONS = {
    "preserve_formatting": True,
    "main_content": True,
    "list_bullets": True,
    "alt_texts": False,
    "links": False,
    "form_fields": False,
    "noscript": False,
    "comments": True,
}


def trafilatura_text(html: str, method: str, fallbacks: bool, deduplicate: bool) -> str | None:
    """trafilatura's main text with one of its settings, as datatrove calls it (comments left out)."""
    from trafilatura import extract

    return extract(
        html, include_comments=False, deduplicate=deduplicate, fast=not fallbacks, **TRAFILATURA_METHODS[method]
    )


def resiliparse_text(html: str) -> str:
    """resiliparse's main-content plain text."""
    from resiliparse.extract.html2text import extract_plain_text
    from resiliparse.parse.html import HTMLTree

    return extract_plain_text(HTMLTree.parse(html), **RESILIPARSE_OPTIONS)


def extract_main_text(html: str, method: str, fallbacks: bool = True, deduplicate: bool = True) -> str | None:
    """The main text of one page with `method` (one of EXTRACTION_METHODS)."""
    if method == "resiliparse":
        return resiliparse_text(html)
    if method == COMBINED_METHOD:
        return trafilatura_text(html, "trafilatura", fallbacks, deduplicate) or resiliparse_text(html)
    return trafilatura_text(html, method, fallbacks, deduplicate)


class MainTextExtractor(BaseExtractor):
    """A datatrove extractor step running `extract_main_text` with the configured method.

    `timeout` is the budget of CPU seconds per page (enforced by `extraction_ahead`); the CPU time of every
    page goes into `cpu_time_histogram`.
    """

    name = "⛏ main text"

    def __init__(self, method: str, fallbacks: bool = True, deduplicate: bool = True, timeout: float = 1.0):
        super().__init__(timeout)
        if method not in EXTRACTION_METHODS:
            raise ValueError(f"unknown extraction method {method!r}; one of {', '.join(EXTRACTION_METHODS)}")
        self.method = method
        self.fallbacks = fallbacks
        self.deduplicate = deduplicate
        self.cpu_time_histogram = CpuTimeHistogram()

    def extract(self, text: str) -> str:
        return extract_main_text(text, self.method, self.fallbacks, self.deduplicate) or ""


class CpuTimeHistogram:
    """Counts of per-page CPU times in logarithmic buckets (1/4 octave), mergeable across tasks."""

    BUCKETS_PER_OCTAVE = 4
    SMALLEST_MS = 0.01

    def __init__(self, counts: dict[str, int] | None = None):
        self.counts: dict[str, int] = dict(counts or {})

    def add(self, seconds: float) -> None:
        milliseconds = max(seconds * 1000, self.SMALLEST_MS)
        bucket = math.ceil(math.log2(milliseconds / self.SMALLEST_MS) * self.BUCKETS_PER_OCTAVE)
        self.counts[str(bucket)] = self.counts.get(str(bucket), 0) + 1

    def upper_ms(self, bucket: int) -> float:
        """The upper bound of a bucket, in milliseconds."""
        return self.SMALLEST_MS * 2 ** (bucket / self.BUCKETS_PER_OCTAVE)

    def percentile_ms(self, fraction: float) -> float | None:
        """The upper bound of the bucket holding the `fraction` quantile (None when empty)."""
        buckets = sorted((int(b), n) for b, n in self.counts.items())
        total = sum(n for _, n in buckets)
        if not total:
            return None
        cumulative = [0]
        for _, n in buckets:
            cumulative.append(cumulative[-1] + n)
        index = bisect.bisect_left(cumulative, math.ceil(fraction * total)) - 1
        return round(self.upper_ms(buckets[max(index, 0)][0]), 3)

    def summary(self) -> dict[str, Any]:
        """{"pages", "p50_ms", "p99_ms", "histogram"} - what the stage statistics report."""
        return {
            "pages": sum(self.counts.values()),
            "p50_ms": self.percentile_ms(0.5),
            "p99_ms": self.percentile_ms(0.99),
            "histogram": dict(sorted(self.counts.items(), key=lambda item: int(item[0]))),
        }


def cpu_time_counts(steps: Iterable[Any]) -> dict[str, int]:
    """The per-page CPU-time histogram of the extraction step among `steps` ({} without one)."""
    for step in steps:
        histogram = getattr(step, "cpu_time_histogram", None)
        if histogram is not None:
            return dict(histogram.counts)
    return {}


def cpu_time_summary(per_task_counts: Iterable[dict[str, int]], steps: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Extraction timing of a stage: pages, pages over the CPU budget, p50/p99 CPU milliseconds, histogram.

    Timing is measured, so it differs between runs; it is kept apart from the stage's document counts.
    """
    merged = CpuTimeHistogram()
    for counts in per_task_counts:
        for bucket, count in counts.items():
            merged.counts[bucket] = merged.counts.get(bucket, 0) + count
    over_budget = sum(step.get("dropped_timeout", 0) for step in steps if step["name"] == "extraction")
    return {"over_budget": over_budget, **merged.summary()}
