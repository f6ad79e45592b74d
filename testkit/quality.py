"""A small real quality classifier for tests: GSM8K problems against a build of real web text, trained in a second."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from testkit.token_corpus import write_corpus

# fastText settings small enough to train in about a second on 2 cores, large enough to separate the classes.
SMALL_FASTTEXT = {"epoch": 25, "lr": 0.5, "dim": 16, "buckets": 20_000}
GSM8K_POSITIVES = 300


def small_train_config(shared_data: Path, workdir: Path, **overrides: Any) -> dict[str, Any]:
    """The values of a QualityTrainConfig: GSM8K test problems as positives, the work dir's build as negatives."""
    return {"workdir": str(workdir), "mlflow": False, "fasttext": SMALL_FASTTEXT,
            "positives": [{"kind": "gsm8k", "path": str(shared_data / "gsm8k" / "test.jsonl"),
                           "sample": GSM8K_POSITIVES}], **overrides}


def train_small_classifier(shared_data: Path, workdir: Path) -> Path:
    """Write a build of real web text into `workdir` (testkit.token_corpus) and train a classifier on it; return
    the classifier's folder, `<workdir>/quality/classifier/`."""
    from fineforge.tasks.common.stage import execute_stage
    from fineforge.tasks.quality.config import QualityTrainConfig
    from fineforge.tasks.quality.job import QualityTrainStage

    write_corpus(shared_data, workdir, with_bad=False)
    config = QualityTrainConfig.model_validate(small_train_config(shared_data, workdir))
    return execute_stage(QualityTrainStage(config), workdir).path
