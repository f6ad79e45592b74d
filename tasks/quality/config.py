"""The quality classifier's configs: what it learns from (positives, negatives), how, and what scoring keeps.

Training (`QualityTrainConfig`) writes `<workdir>/quality/<name>/` (the fastText model and its held-out report);
scoring (`QualityScoreConfig`) writes `<workdir>/<dump>/quality_filtered/` per input stage. Every check that
needs no work is a validator here, so the CLI, a Prefect run and the API fail alike, naming the field.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from fineforge.tasks.common.fields import ExistingFile
from fineforge.tasks.common.spark import SparkConfig
from fineforge.tasks.tokens.config import corpus_folders

QUALITY = "quality"  # the group of trained classifiers: <workdir>/quality/<name>/
QUALITY_FILTERED = "quality_filtered"  # the scored, thresholded documents: <workdir>/<dump>/quality_filtered/
DEFAULT_CLASSIFIER = "classifier"
MODEL_FILE, REPORT_FILE = "model.bin", "report.json"
POSITIVE, NEGATIVE = "positive", "negative"  # the fastText labels (__label__positive, __label__negative)


def _existing(cls, paths: list[str]) -> list[str]:
    """Validator of a list of input paths: each one exists."""
    missing = [path for path in paths if not Path(path).exists()]
    if missing:
        raise ValueError(f"not found: {', '.join(missing)}")
    return paths


class _PositivesBase(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sample: int | None = Field(None, gt=0, description="At most N texts of this source (a seeded random sample).")


class _PositiveFile(_PositivesBase):
    path: ExistingFile = Field(..., description="A JSONL file.")


class Gsm8kPositives(_PositiveFile):
    """GSM8K problems (question and worked solution, calculator annotations removed)."""

    kind: Literal["gsm8k"]


class OasstPositives(_PositiveFile):
    """OpenAssistant trees: each tree's best-ranked conversation."""

    kind: Literal["oasst"]


class ConversationPositives(_PositiveFile):
    """A user's JSONL conversations ({"messages": [...]} or {"prompt", "response"} per line)."""

    kind: Literal["conversations"]


class DocumentPositives(_PositivesBase):
    """A user's reference corpus: Parquet documents with a `text` column (e.g. another build's stage)."""

    kind: Literal["documents"]
    input: list[str] = Field(..., min_length=1, description="Parquet folders or files.")

    _inputs_exist = field_validator("input")(_existing)


PositiveSource = Annotated[
    Gsm8kPositives | OasstPositives | ConversationPositives | DocumentPositives, Field(discriminator="kind")
]


class NegativeSample(BaseModel):
    """Random documents of a build: what the classifier learns to tell the positives from."""

    model_config = ConfigDict(extra="forbid")

    input: list[str] = Field(default_factory=list, description="Parquet folders or files of documents; default: "
                             "every WORKDIR/DUMP/scrubbed/.")
    sample: int | None = Field(None, gt=0, description="How many documents (a seeded random sample); default: as "
                               "many as there are positives.")

    _inputs_exist = field_validator("input")(_existing)


class FastTextSettings(BaseModel):
    """fastText supervised training (`fasttext.train_supervised`)."""

    model_config = ConfigDict(extra="forbid")

    epoch: int = Field(10, ge=1, le=1000)
    lr: float = Field(0.5, gt=0.0, le=10.0, description="Learning rate.")
    word_ngrams: int = Field(2, ge=1, le=5, description="Word n-grams up to this length.")
    dim: int = Field(64, ge=2, le=1024, description="Size of the word vectors.")
    min_count: int = Field(1, ge=1, description="Words seen fewer times are left out.")
    buckets: int = Field(100_000, ge=1, le=10_000_000, description="Hash buckets of the word n-grams (the model "
                         "file holds buckets x dim floats).")
    threads: int = Field(1, ge=1, description="Training threads; 1 trains the same model every time.")


class _TrackedConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    workdir: str = Field("work", description="The data build's output root.")
    mlflow: bool = Field(True, description="Track the run in MLflow.")
    mlflow_tracking_uri: str | None = Field(None, description="Defaults to $MLFLOW_TRACKING_URI, else a SQLite file "
                                            "in the work dir.")
    mlflow_experiment: str = "fineforge-quality"


class QualityTrainConfig(_TrackedConfig):
    """Train a fastText classifier: positives (reference texts) against a random sample of the build's documents."""

    name: str = Field(DEFAULT_CLASSIFIER, pattern=r"^[\w.-]+$", description="The classifier: WORKDIR/quality/NAME/.")
    positives: list[PositiveSource] = Field(..., min_length=1, description="Where the high-quality texts come from.")
    negatives: NegativeSample = Field(default_factory=NegativeSample)
    balance: bool = Field(True, description="Train on as many positives as negatives (a seeded sample of the larger "
                          "class).")
    held_out: float = Field(0.1, gt=0.0, lt=1.0, description="Share of the texts (by a hash) kept out of training "
                            "to measure precision and recall.")
    threshold: float = Field(0.5, ge=0.0, le=1.0, description="Positive score from which a document is kept.")
    seed: int = Field(0, description="Seed of the samples, the held-out split and fastText.")
    fasttext: FastTextSettings = Field(default_factory=FastTextSettings)

    @model_validator(mode="after")
    def _negatives_found(self) -> QualityTrainConfig:
        if not self.negatives.input:
            self.negatives.input = corpus_folders(self.workdir)
            if not self.negatives.input:
                raise PydanticCustomError("no_input", f"negatives.input: none given, and no build in "
                                          f"{self.workdir}/<dump>/scrubbed/")
        return self


def classifier_report(folder: str | Path) -> dict[str, Any]:
    """The held-out report of the trained classifier in `folder` (FileNotFoundError when there is none)."""
    folder = Path(folder)
    if not (folder / MODEL_FILE).is_file() or not (folder / REPORT_FILE).is_file():
        raise FileNotFoundError(f"no trained classifier in {folder} (run `fineforge quality train` first)")
    return json.loads((folder / REPORT_FILE).read_text())


class QualityScoreConfig(_TrackedConfig):
    """Score every document of the input stages with a trained classifier; keep those at or above the threshold."""

    model: str | None = Field(None, description="The trained classifier's folder; default WORKDIR/quality/classifier/.")
    input: list[str] = Field(default_factory=list, description="Document stage folders, e.g. WORKDIR/DUMP/scrubbed; "
                             "default: every WORKDIR/DUMP/scrubbed/. The output goes beside each.")
    threshold: float | None = Field(None, ge=0.0, le=1.0, description="Lowest positive score kept; default: the "
                                    "threshold the classifier was trained and evaluated with.")
    examples: int = Field(5, ge=0, le=100, description="Highest- and lowest-scored documents shown in the report.")
    spark: SparkConfig = Field(default_factory=SparkConfig)

    @model_validator(mode="after")
    def _model_trained(self) -> QualityScoreConfig:
        if self.model is None:
            self.model = str(Path(self.workdir) / QUALITY / DEFAULT_CLASSIFIER)
        try:
            report = classifier_report(self.model)
        except FileNotFoundError as e:
            raise PydanticCustomError("model", f"model: {e}") from e
        if self.threshold is None:
            self.threshold = report["threshold"]
        return self

    @model_validator(mode="after")
    def _inputs_found(self) -> QualityScoreConfig:
        if not self.input:
            self.input = corpus_folders(self.workdir)
            if not self.input:
                raise PydanticCustomError("no_input", f"input: none given, and no build in "
                                          f"{self.workdir}/<dump>/scrubbed/")
        missing = [path for path in self.input if not Path(path).is_dir()]
        if missing:
            raise PydanticCustomError("input_not_found", f"input: not a folder: {', '.join(missing)}")
        groups = [Path(path).resolve().parent.name for path in self.input]
        repeated = sorted({group for group in groups if groups.count(group) > 1})
        if repeated:
            raise PydanticCustomError("input_groups", f"input: two folders of one dump {repeated}; their scored "
                                      f"output would be one folder WORKDIR/DUMP/{QUALITY_FILTERED}")
        return self
