"""The per-document part of scoring: datatrove's fastText classifier filter on a local model, the score column,
the score histogram and the highest- and lowest-scored examples. Testable without Spark."""

from __future__ import annotations

import heapq
import itertools
from pathlib import Path
from typing import Any

import pyarrow as pa
from datatrove.data import Document
from datatrove.pipeline.filters.fasttext_filter import FastTextClassifierFilter

from fineforge.tasks.common.documents import DOCUMENT_SCHEMA
from fineforge.tasks.filter.language_id import LABEL_PREFIX, fasttext_model
from fineforge.tasks.quality.config import NEGATIVE, POSITIVE

QUALITY_SCORE = "quality_score"
# The documents of the quality_filtered stage: the build's columns and the classifier's score.
SCORED_DOCUMENT_SCHEMA = DOCUMENT_SCHEMA.append(
    pa.field(QUALITY_SCORE, pa.float64(), nullable=False, metadata={"doc": "fastText probability of 'positive'"})
)
# What a line break becomes before fastText reads a text (it reads one example per line), in training and scoring.
NEWLINE_REPLACEMENT = " "
HISTOGRAM_BINS = 10
EXAMPLE_CHARS = 300  # characters of an example's text shown in the report


def fasttext_input(text: str) -> str:
    """A text as fastText reads it, exactly as datatrove's filter hands it over (one line)."""
    return text.strip().replace("\n", NEWLINE_REPLACEMENT)


def positive_score(model: Any, text: str) -> float:
    """The model's probability that `text` is a positive."""
    labels, scores = model.predict(fasttext_input(text), k=-1)
    return float(dict(zip(labels, scores, strict=True)).get(LABEL_PREFIX + POSITIVE, 0.0))


class QualityClassifierFilter(FastTextClassifierFilter):
    """datatrove's fastText classifier filter, keeping documents whose positive score is at least `threshold`; the
    model is read from a local file (never downloaded or copied), once per worker process (`fasttext_model`)."""

    def __init__(self, model_path: Path, threshold: float) -> None:
        super().__init__(str(model_path), keep_labels=(POSITIVE, threshold), newline_replacement=NEWLINE_REPLACEMENT)
        self.model_path = Path(model_path)

    @property
    def model(self):
        if self._model is None:  # once per filter (one Spark task), not per document: the lookup stats the file
            self._model = fasttext_model(self.model_path)
        return self._model

    def score(self, document: Document) -> tuple[float, bool]:
        """Score one document; return (score, kept). The score leaves the document's metadata for its column."""
        kept = any(True for _ in self([document]))
        score = document.metadata.pop(LABEL_PREFIX + POSITIVE)
        document.metadata.pop(LABEL_PREFIX + NEGATIVE, None)
        return score, kept


def score_bin(score: float, bins: int = HISTOGRAM_BINS) -> str:
    """The histogram bin of a score in [0, 1], e.g. "0.3-0.4" (the last bin holds 1.0)."""
    index = min(int(score * bins), bins - 1)
    return f"{index / bins:.1f}-{(index + 1) / bins:.1f}"


class ScoreExamples:
    """The `count` highest- and lowest-scored documents seen, with the start of their text."""

    def __init__(self, count: int) -> None:
        self.count = count
        self._order = itertools.count()  # breaks ties in file order
        self.top: list[tuple] = []
        self.bottom: list[tuple] = []

    def add(self, score: float, document: Document, text: str, kept: bool) -> None:
        if not self.count:
            return
        example = {"score": round(score, 6), "kept": kept, "id": document.id, "url": document.metadata.get("url"),
                   "text": text[:EXAMPLE_CHARS]}
        order = -next(self._order)  # earlier documents win ties; never compares the dicts
        for heap, key in ((self.top, score), (self.bottom, -score)):
            push = heapq.heappush if len(heap) < self.count else heapq.heappushpop
            push(heap, (key, order, example))

    def as_dict(self) -> dict[str, list[dict]]:
        """{"top": highest first, "bottom": lowest first}."""
        return {"top": [entry[2] for entry in sorted(self.top, reverse=True)],
                "bottom": [entry[2] for entry in sorted(self.bottom, reverse=True)]}


def merge_examples(parts: list[dict[str, list[dict]]], count: int) -> dict[str, list[dict]]:
    """The examples of a whole stage from those of its parts."""
    top = [example for part in parts for example in part["top"]]
    bottom = [example for part in parts for example in part["bottom"]]
    return {"top": sorted(top, key=lambda e: -e["score"])[:count],
            "bottom": sorted(bottom, key=lambda e: e["score"])[:count]}
