"""The quality stages: training the classifier into `<workdir>/quality/<name>/` (on the driver, no Spark), and
scoring a build's documents with it on Spark into `<workdir>/<dump>/quality_filtered/` (one task per part file,
datatrove's fastText classifier filter inside each, the model loaded once per worker process)."""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, ClassVar

from fineforge.tasks.common.datatrove_steps import dropped_by_reason, pipeline_statistics
from fineforge.tasks.common.documents import PartWriter, SchemaError, document_row, parquet_files, read_documents
from fineforge.tasks.common.spark_jobs import run_per_file
from fineforge.tasks.common.stage import ConfiguredStage, StageOutput, completed_output, file_identity, input_identity
from fineforge.tasks.quality.classifier import held_out_report, train_fasttext, write_training_file
from fineforge.tasks.quality.config import (
    MODEL_FILE,
    QUALITY,
    QUALITY_FILTERED,
    REPORT_FILE,
    DocumentPositives,
    QualityScoreConfig,
    QualityTrainConfig,
)
from fineforge.tasks.quality.scoring import (
    QUALITY_SCORE,
    SCORED_DOCUMENT_SCHEMA,
    QualityClassifierFilter,
    ScoreExamples,
    merge_examples,
    score_bin,
)
from fineforge.tasks.quality.texts import Text, document_sample, is_held_out, positive_texts, seeded_sample

log = logging.getLogger(__name__)

EXAMPLES_FILE = "examples.json"  # the highest- and lowest-scored documents, beside the scored parts
_PART_EXAMPLES = ".examples-{rank:05d}.json"  # one task's examples, merged into EXAMPLES_FILE


def training_texts(config: QualityTrainConfig) -> tuple[list[Text], list[Text]]:
    """(positives, negatives): every positive source's texts, and a seeded sample of the build's documents (as many
    as positives unless `negatives.sample` says); with `balance`, positives are sampled down to the negatives."""
    positives = [text for source in config.positives for text in positive_texts(source, config.seed)]
    if not positives:
        raise ValueError("positives: the sources hold no text")
    files = parquet_files(config.negatives.input)
    negatives = document_sample(files, config.negatives.sample or len(positives), config.seed)
    if not negatives:
        raise ValueError(f"negatives.input: no documents in {', '.join(config.negatives.input)}")
    if config.balance and len(positives) > len(negatives):
        positives = seeded_sample(positives, len(negatives), config.seed)
    return positives, negatives


def split_held_out(texts: list[Text], config: QualityTrainConfig, label: str) -> tuple[list[Text], list[Text]]:
    """(training, held-out) texts of one class; each part must hold at least one text."""
    held = [is_held_out(text.key, config.held_out, config.seed) for text in texts]
    train = [text for text, out in zip(texts, held, strict=True) if not out]
    held_out = [text for text, out in zip(texts, held, strict=True) if out]
    if not train or not held_out:
        raise ValueError(f"held_out: {len(texts)} {label} texts give {len(train)} to train on and {len(held_out)} "
                         f"held out; each needs at least one (give more texts or change held_out)")
    return train, held_out


def train_classifier(config: QualityTrainConfig, output_dir: Path) -> dict[str, Any]:
    """Train on the texts outside the held-out share, save `model.bin` and `report.json` in `output_dir`; return
    the statistics (counts, and precision, recall and F1 on the held-out texts at the threshold)."""
    positives, negatives = training_texts(config)
    positives_train, positives_held = split_held_out(positives, config, "positive")
    negatives_train, negatives_held = split_held_out(negatives, config, "negative")
    output_dir.mkdir(parents=True, exist_ok=True)
    training_file = output_dir / ".training.txt"
    write_training_file(training_file, positives_train, negatives_train)
    model = train_fasttext(training_file, config.fasttext, config.seed, output_dir / MODEL_FILE)
    training_file.unlink()
    measured = held_out_report(model, positives_held, negatives_held, config.threshold)
    counts = {"positives_train": len(positives_train), "positives_held_out": len(positives_held),
              "negatives_train": len(negatives_train), "negatives_held_out": len(negatives_held)}
    report = {**counts, "threshold": config.threshold, "fasttext": config.fasttext.model_dump(), **measured}
    (output_dir / REPORT_FILE).write_text(json.dumps(report, indent=2))
    log.info("quality classifier: held-out precision %s, recall %s, F1 %s at threshold %s", measured["precision"],
             measured["recall"], measured["f1"], config.threshold)
    return {**counts, "documents_in": len(positives) + len(negatives),
            **{key: value for key, value in measured.items() if key != "by_threshold"},
            "model_bytes": (output_dir / MODEL_FILE).stat().st_size}


@dataclass(frozen=True)
class QualityTrainStage:
    """`<workdir>/quality/<name>/`: the fastText model, its held-out report, and stats.json."""

    config: QualityTrainConfig
    group: ClassVar[str] = QUALITY

    @property
    def name(self) -> str:
        return self.config.name

    def fingerprint_parts(self) -> list[Any]:
        files = [Path(source.path) for source in self.config.positives if not isinstance(source, DocumentPositives)]
        files += parquet_files([path for source in self.config.positives if isinstance(source, DocumentPositives)
                                for path in source.input])
        files += parquet_files(self.config.negatives.input)
        return [file_identity(files), self.config.model_dump(mode="json", exclude={"workdir"})]

    def run(self, spark, output_dir: Path) -> dict[str, Any]:
        return train_classifier(self.config, Path(output_dir))


def score_part(path: str, part_path: Path, rank: int, model_path: str, threshold: float,
               examples: int) -> dict[str, Any]:
    """Score the documents of one Parquet file; write those at or above `threshold`, with their score, into
    `part_path` and this part's examples beside it; return its statistics with the score histogram."""
    classifier = QualityClassifierFilter(Path(model_path), threshold)
    histogram: Counter[str] = Counter()
    shown = ScoreExamples(examples)
    with PartWriter(part_path, schema=SCORED_DOCUMENT_SCHEMA) as writer:
        for document in read_documents(Path(path)):
            text = document.text
            if text is None:
                raise SchemaError(f"document {document.id!r} has no text (column 'text' is null)")
            score, kept = classifier.score(document)
            histogram[score_bin(score)] += 1
            shown.add(score, document, text, kept)
            if kept:
                writer.write({**document_row(document), QUALITY_SCORE: score})
    (part_path.parent / _PART_EXAMPLES.format(rank=rank)).write_text(json.dumps(shown.as_dict()))
    steps = pipeline_statistics([classifier])
    return {"documents_in": sum(histogram.values()), "documents_out": writer.rows, "bytes_out": writer.bytes,
            "dropped": dropped_by_reason(steps), "steps": steps, "score_histogram": dict(histogram)}


def collect_examples(output_dir: Path, count: int) -> dict[str, list[dict]]:
    """Merge the parts' examples into EXAMPLES_FILE (the parts' files are removed); return them."""
    part_files = sorted(output_dir.glob(_PART_EXAMPLES.replace("{rank:05d}", "*")))
    examples = merge_examples([json.loads(path.read_text()) for path in part_files], count)
    (output_dir / EXAMPLES_FILE).write_text(json.dumps(examples, indent=2, ensure_ascii=False))
    for path in part_files:
        path.unlink()
    return examples


@dataclass(frozen=True)
class QualityScoreStage(ConfiguredStage):
    """`<workdir>/<group>/quality_filtered/`: the documents of one stage output scored by the classifier, those
    below the threshold dropped, with EXAMPLES_FILE. `inputs`: [the documents, the classifier]."""

    config: QualityScoreConfig
    inputs: list[StageOutput | str]
    name: ClassVar[str] = QUALITY_FILTERED

    def fingerprint_parts(self) -> list[Any]:
        return [input_identity(self.inputs), self.config.model_dump(mode="json", include={"threshold", "examples"})]

    def run(self, spark, output_dir: Path) -> dict[str, Any]:
        documents = self.inputs[0]
        folder = documents.path if isinstance(documents, StageOutput) else documents
        work = partial(score_part, model_path=str(Path(self.config.model) / MODEL_FILE),
                       threshold=self.config.threshold, examples=self.config.examples)
        statistics = run_per_file(spark, [str(path) for path in parquet_files([folder])], work, output_dir)
        collect_examples(Path(output_dir), self.config.examples)
        return {**statistics, "threshold": self.config.threshold}


def score_stages(config: QualityScoreConfig) -> list[QualityScoreStage]:
    """One scoring stage per input folder, in the folder's group (its dump). A stage folder is identified by its
    fingerprint, the classifier by its training stage's; anything else by its files."""
    model = completed_output(config.model) or str(Path(config.model) / MODEL_FILE)
    return [QualityScoreStage(config, [completed_output(folder) or folder, model], Path(folder).resolve().parent.name)
            for folder in config.input]
