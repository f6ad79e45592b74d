"""Training the quality classifier: fastText supervised on positives against a build's documents, measured on the
held-out texts (precision, recall and F1 of "positive" at the threshold, and at other thresholds to choose one)."""

from __future__ import annotations

import logging
import multiprocessing
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from fineforge.tasks.filter.language_id import LABEL_PREFIX
from fineforge.tasks.quality.config import NEGATIVE, POSITIVE, FastTextSettings
from fineforge.tasks.quality.scoring import fasttext_input, positive_score
from fineforge.tasks.quality.texts import Text

log = logging.getLogger(__name__)

# Thresholds of the report's precision/recall table.
REPORT_THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def write_training_file(path: Path, positives: Sequence[Text], negatives: Sequence[Text]) -> int:
    """fastText's supervised input: one `__label__<class> <text>` line per text; returns the lines written."""
    with open(path, "w", encoding="utf-8") as out:
        for label, texts in ((POSITIVE, positives), (NEGATIVE, negatives)):
            for text in texts:
                out.write(f"{LABEL_PREFIX}{label} {fasttext_input(text.text)}\n")
    return len(positives) + len(negatives)


def _train_and_save(training_file: str, settings: dict[str, Any], seed: int, model_path: str) -> None:
    import fasttext

    model = fasttext.train_supervised(
        input=training_file, epoch=settings["epoch"], lr=settings["lr"], wordNgrams=settings["word_ngrams"],
        dim=settings["dim"], minCount=settings["min_count"], bucket=settings["buckets"], thread=settings["threads"],
        seed=seed, loss="softmax", verbose=0,
    )
    model.save_model(model_path)


def train_fasttext(training_file: Path, settings: FastTextSettings, seed: int, model_path: Path):
    """Train a fastText supervised model on `training_file`, save it as `model_path` and return it loaded.

    Training runs in a fresh process: once one training in a process has failed with "Encountered NaN", every
    later one in that process fails the same way (measured with fasttext-numpy2-wheel 0.9.2), so a long-lived
    worker or test session would be poisoned by one bad run.
    """
    from fasttext.FastText import _FastText

    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        pool.submit(_train_and_save, str(training_file), settings.model_dump(), seed, str(model_path)).result()
    return _FastText(str(model_path))


def _ratio(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def precision_recall(scores: Sequence[float], is_positive: Sequence[bool], threshold: float) -> dict[str, Any]:
    """Precision, recall and F1 of "score >= threshold means positive" (None where undefined), with the counts."""
    predicted = [score >= threshold for score in scores]
    true_pos = sum(p and t for p, t in zip(predicted, is_positive, strict=True))
    false_pos = sum(p and not t for p, t in zip(predicted, is_positive, strict=True))
    false_neg = sum(t and not p for p, t in zip(predicted, is_positive, strict=True))
    precision, recall = _ratio(true_pos, true_pos + false_pos), _ratio(true_pos, true_pos + false_neg)
    f1 = _ratio(2 * true_pos, 2 * true_pos + false_pos + false_neg)
    return {"threshold": threshold, "precision": precision, "recall": recall, "f1": f1,
            "true_positives": true_pos, "false_positives": false_pos, "false_negatives": false_neg,
            "true_negatives": len(scores) - true_pos - false_pos - false_neg}


def held_out_report(model: Any, positives: Sequence[Text], negatives: Sequence[Text], threshold: float) -> dict:
    """How the model does on held-out texts: at `threshold`, at REPORT_THRESHOLDS, and the F1 of calling every
    text positive (what a classifier that learnt nothing reaches)."""
    scores = [positive_score(model, text.text) for text in (*positives, *negatives)]
    truth = [True] * len(positives) + [False] * len(negatives)
    return {
        **precision_recall(scores, truth, threshold),
        "f1_all_positive": _ratio(2 * len(positives), 2 * len(positives) + len(negatives)),
        "by_threshold": [precision_recall(scores, truth, value) for value in REPORT_THRESHOLDS],
    }
