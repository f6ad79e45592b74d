"""Run datatrove PipelineSteps inside a Spark partition and gather their statistics.

datatrove has local, Slurm and Ray executors but no Spark one. Inside a partition we do what its executors
do for one task: chain the steps' generators (`step(data, rank, world_size)`), drain the result, and read
each step's own `.stats`. The statistics travel back to the driver as plain dicts and are merged there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from datatrove.data import Document

# datatrove's per-document counters (datatrove.utils.typeshelper.StatHints).
TOTAL, FORWARDED, DROPPED = "total", "forwarded", "dropped"
DROPPED_PREFIX = "dropped_"
# Extractor failures that datatrove counts but does not add to "dropped".
EXTRACTOR_FAILURES = ("timeout", "broken_process", "clean_error")
# Drop reason of filters that return a bare False (e.g. LanguageFilter), per step name.
UNNAMED_DROP_REASON = {"trafilatura": "no_text", "extraction": "no_text", "language": "below_threshold",
                       "quality": "below_threshold"}
DEFAULT_UNNAMED_DROP_REASON = "unspecified"
# Non-count metrics of datatrove's stats that are not carried over.
IGNORED_METRICS = {"doc_len_tokens", "batches"}


def run_steps(
    steps: Iterable[Any],
    documents: Iterable[Document],
    rank: int = 0,
    world_size: int = 1,
    extract_ahead: int = 0,
    observe: Callable[[Iterable[Document], Any], Iterable[Document]] | None = None,
) -> Iterator[Document]:
    """Chain datatrove steps over `documents` lazily, as datatrove's executors do for one task.

    With `extract_ahead` > 0, extractors run up to that many documents ahead of the rest of the pipeline in
    their sandbox process (`tasks.extraction_ahead`: same output, extraction overlaps the other steps).
    `observe(documents, step)`, when given, wraps each step's output (e.g. to time the step).
    """
    from datatrove.pipeline.extractors.base import BaseExtractor

    from fineforge.tasks.filter.extraction_ahead import run_extractor_ahead

    pipeline: Iterable[Document] = documents
    for step in steps:
        if extract_ahead > 0 and isinstance(step, BaseExtractor):
            pipeline = run_extractor_ahead(step, pipeline, extract_ahead)
        else:
            pipeline = step(pipeline, rank, world_size)
        if observe is not None:
            pipeline = observe(pipeline, step)
    return iter(pipeline)


def step_statistics(step: Any, name: str) -> dict[str, Any]:
    """One step's datatrove stats as {"name", "documents_in", "documents_out", "dropped_<reason>", ...}.

    documents_in - sum(dropped_*) == documents_out; `chars_out` is the text length of the forwarded
    documents; other counters of the step (e.g. C4's line counts) keep their datatrove names.
    """
    metrics = {key: int(value.total) for key, value in step.stats.stats.items() if key not in IGNORED_METRICS}
    documents_in = metrics.pop(TOTAL, 0)
    reasons = {key[len(DROPPED_PREFIX) :]: metrics.pop(key) for key in list(metrics) if key.startswith(DROPPED_PREFIX)}
    dropped = metrics.pop(DROPPED, 0)
    unnamed = dropped - sum(reasons.values())
    if unnamed:
        reason = UNNAMED_DROP_REASON.get(name, DEFAULT_UNNAMED_DROP_REASON)
        reasons[reason] = reasons.get(reason, 0) + unnamed
    for failure in EXTRACTOR_FAILURES:
        if failure in metrics:
            reasons[failure] = reasons.get(failure, 0) + metrics.pop(failure)
    documents_out = metrics.pop(FORWARDED, documents_in - sum(reasons.values()))
    result: dict[str, Any] = {"name": name, "documents_in": documents_in, "documents_out": documents_out}
    result.update({f"{DROPPED_PREFIX}{reason}": count for reason, count in sorted(reasons.items())})
    if "doc_len" in metrics:
        result["chars_out"] = metrics.pop("doc_len")
    result.update({key.replace("-", "_"): count for key, count in sorted(metrics.items())})
    return result


def pipeline_statistics(steps: Iterable[Any]) -> list[dict[str, Any]]:
    """Statistics of every step, in pipeline order, under the steps' short names (`step_name`)."""
    return [step_statistics(step, step_name(step)) for step in steps]


def dropped_by_reason(steps: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """{"<step>/<reason>": n} over all steps, e.g. "gopher_rep/dup_line_frac"."""
    dropped: dict[str, int] = {}
    for step in steps:
        for key, value in step.items():
            if key.startswith(DROPPED_PREFIX) and value:
                dropped[f"{step['name']}/{key[len(DROPPED_PREFIX) :]}"] = int(value)
    return dropped


def step_name(step: Any) -> str:
    """The short, stable name of a datatrove step used in statistics (e.g. `gopher_rep`)."""
    return STEP_NAMES.get(type(step).__name__, type(step).__name__)


# Statistics names of the steps (prefixes of the drop reasons, e.g. `gopher_rep/dup_line_frac`).
STEP_NAMES = {
    "URLFilter": "url",
    "Trafilatura": "trafilatura",
    "MainTextExtractor": "extraction",
    "LanguageFilter": "language",
    "GopherRepetitionFilter": "gopher_rep",
    "FastGopherRepetitionFilter": "gopher_rep",
    "GopherQualityFilter": "gopher_qual",
    "C4QualityFilter": "c4",
    "FineWebQualityFilter": "fineweb_qual",
    "PIIFormatter": "pii",
    "PerDocumentPIIFormatter": "pii",
    "QualityClassifierFilter": "quality",
}
