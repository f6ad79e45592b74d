"""The quality classifier on real data: GSM8K and OpenAssistant texts against real web pages that went through the
filter stage (two wget WARCs), trained with fastText, then scoring on the real Spark session."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from fineforge.tasks.common.documents import PartWriter, parquet_files
from fineforge.tasks.common.stage import StageOutput, execute_stage
from fineforge.tasks.filter.language_id import fasttext_model
from fineforge.tasks.quality.config import MODEL_FILE, REPORT_FILE, QualityScoreConfig, QualityTrainConfig
from fineforge.tasks.quality.job import EXAMPLES_FILE, QualityTrainStage, score_stages
from fineforge.tasks.quality.scoring import QUALITY_SCORE, positive_score, score_bin
from fineforge.tasks.quality.texts import Text, seeded_sample
from testkit.quality import SMALL_FASTTEXT

DUMP = "CC-QUALITY-TEST"


def gsm8k_problems(shared_data: Path, count: int) -> list[dict]:
    lines = (shared_data / "gsm8k" / "test.jsonl").read_text().splitlines()[:count]
    return [json.loads(line) for line in lines]


@pytest.fixture(scope="module")
def trained(filtered, shared_data, tmp_path_factory) -> tuple[QualityTrainConfig, StageOutput]:
    """Positives: GSM8K training problems and OpenAssistant conversations; negatives: the filter stage's pages."""
    workdir = tmp_path_factory.mktemp("quality")
    config = QualityTrainConfig(
        workdir=str(workdir), mlflow=False, held_out=0.3, fasttext=SMALL_FASTTEXT,
        positives=[{"kind": "gsm8k", "path": str(shared_data / "gsm8k" / "train.jsonl"), "sample": 200},
                   {"kind": "oasst", "path": str(shared_data / "sft" / "oasst-en-100-trees.jsonl")}],
        negatives={"input": [str(filtered.folder)]},
    )
    return config, execute_stage(QualityTrainStage(config), workdir)


def test_training_separates_positives_from_web_pages_on_held_out_texts(trained):
    config, output = trained
    report = json.loads((output.path / REPORT_FILE).read_text())
    stats = output.statistics
    assert (output.path / MODEL_FILE).is_file() and output.path == Path(config.workdir) / "quality" / "classifier"
    # balanced: as many positives as the build had documents
    documents = sum(pq.read_metadata(path).num_rows for path in parquet_files([config.negatives.input[0]]))
    assert report["negatives_train"] + report["negatives_held_out"] == documents
    assert report["positives_train"] + report["positives_held_out"] == documents
    assert report["negatives_held_out"] > 0 and report["positives_held_out"] > 0
    # a classifier that learnt nothing calls everything positive; this one must get halfway from there to perfect
    assert report["f1"] >= (1 + report["f1_all_positive"]) / 2, report
    assert report["precision"] > report["positives_held_out"] / (report["positives_held_out"]
                                                                 + report["negatives_held_out"])
    assert stats["f1"] == report["f1"] and stats["threshold"] == config.threshold
    assert [row["threshold"] for row in report["by_threshold"]] == sorted(row["threshold"]
                                                                        for row in report["by_threshold"])
    again = execute_stage(QualityTrainStage(config), Path(config.workdir))
    assert again.skipped and again.fingerprint == output.fingerprint


def write_documents(folder: Path, texts: list[tuple[str, str]]) -> Path:
    """(id, text) documents as one part file of a stage folder."""
    folder.mkdir(parents=True)
    with PartWriter(folder / "part-00000.parquet") as writer:
        for doc_id, text in texts:
            writer.write({"id": doc_id, "text": text, "url": f"https://example.org/{doc_id}", "dump": DUMP})
    return folder


def test_scoring_keeps_the_score_and_drops_below_the_threshold(trained, filtered, shared_data, spark):
    config, model = trained
    workdir = Path(config.workdir)
    # unseen math problems (GSM8K's test split) beside the web pages the filter stage kept
    web = [(row["id"], row["text"]) for path in parquet_files([filtered.folder])
           for row in pq.read_table(path, columns=["id", "text"]).to_pylist()]
    math = [(f"gsm8k-test-{i}", f"{p['question']}\n{p['answer']}") for i, p in enumerate(gsm8k_problems(shared_data,
                                                                                                           40))]
    folder = write_documents(workdir / DUMP / "scrubbed", web + math)
    score_config = QualityScoreConfig(workdir=str(workdir), input=[str(folder)], examples=3, mlflow=False)
    (stage,) = score_stages(score_config)
    output = execute_stage(stage, workdir, spark)

    stats = output.statistics
    assert output.path == workdir / DUMP / "quality_filtered"
    assert stats["documents_in"] == len(web) + len(math)
    assert stats["dropped"] == {"quality/below_threshold": stats["documents_in"] - stats["documents_out"]}
    assert sum(stats["score_histogram"].values()) == stats["documents_in"]
    kept = pq.read_table(parquet_files([output.path])[0])
    assert kept.num_rows == stats["documents_out"] and QUALITY_SCORE in kept.column_names
    classifier = fasttext_model(model.path / MODEL_FILE)
    for row in kept.to_pylist():
        assert row[QUALITY_SCORE] >= score_config.threshold
        assert row[QUALITY_SCORE] == pytest.approx(positive_score(classifier, row["text"]), abs=1e-6)
    all_scores = [positive_score(classifier, text) for _, text in web + math]
    expected_histogram: dict[str, int] = {}
    for score in all_scores:
        expected_histogram[score_bin(score)] = expected_histogram.get(score_bin(score), 0) + 1
    assert stats["score_histogram"] == expected_histogram
    # the classifier's effect: unseen math is kept far more often than the web pages
    kept_ids = set(kept.column("id").to_pylist())
    math_kept = sum(doc_id in kept_ids for doc_id, _ in math) / len(math)
    web_kept = sum(doc_id in kept_ids for doc_id, _ in web) / len(web)
    assert math_kept > web_kept + 0.5, (math_kept, web_kept)
    examples = json.loads((output.path / EXAMPLES_FILE).read_text())
    assert [e["score"] for e in examples["top"]] == pytest.approx(sorted(all_scores, reverse=True)[:3], abs=1e-6)
    assert [e["score"] for e in examples["bottom"]] == pytest.approx(sorted(all_scores)[:3], abs=1e-6)
    assert not any(examples["bottom"][i]["kept"] for i in range(3)) and not list(output.path.glob(".examples-*"))


def test_a_retrained_model_is_the_one_a_worker_scores_with(trained, tmp_path):
    """fastText models are cached per process: a model file replaced at the same path must be read again."""
    _, model = trained
    copy = tmp_path / MODEL_FILE
    shutil.copyfile(model.path / MODEL_FILE, copy)
    first = fasttext_model(copy)
    assert fasttext_model(copy) is first
    shutil.copyfile(model.path / MODEL_FILE, tmp_path / "retrained.bin")
    os.replace(tmp_path / "retrained.bin", copy)  # as a stage replaces its output: a new file at the same path
    assert fasttext_model(copy) is not first


def test_seeded_samples_are_stable_and_seed_dependent():
    texts = [Text(f"k{i}", f"text {i}") for i in range(100)]
    assert seeded_sample(texts, 10, 0) == seeded_sample(list(reversed(texts)), 10, 0)
    assert {t.key for t in seeded_sample(texts, 10, 0)} != {t.key for t in seeded_sample(texts, 10, 1)}
    assert len(seeded_sample(texts, 500, 0)) == 100


@pytest.mark.parametrize(("values", "field"), [
    ({"threshold": 1.5}, "threshold"),
    ({"positives": []}, "positives"),
    ({"positives": [{"kind": "gsm8k", "path": "/nowhere/train.jsonl"}]}, "positives.0.gsm8k.path"),
    ({"positives": [{"kind": "wikipedia", "path": "x"}]}, "positives.0"),
    ({"fasttext": {"epoch": 0}}, "fasttext.epoch"),
    ({"negatives": {"input": ["/nowhere"]}}, "negatives.input"),
])
def test_a_wrong_training_config_names_the_field(values, field, shared_data, tmp_path, filtered):
    base = {"workdir": str(tmp_path), "negatives": {"input": [str(filtered.folder)]},
            "positives": [{"kind": "gsm8k", "path": str(shared_data / "gsm8k" / "test.jsonl")}]}
    with pytest.raises(ValidationError) as error:
        QualityTrainConfig.model_validate({**base, **values})
    locations = {".".join(map(str, e["loc"])) for e in error.value.errors()}
    assert any(location.startswith(field) for location in locations), locations


def test_training_without_a_build_names_negatives(shared_data, tmp_path):
    with pytest.raises(ValidationError, match=r"negatives\.input: none given, and no build"):
        QualityTrainConfig(workdir=str(tmp_path), positives=[{"kind": "gsm8k", "path": str(shared_data / "gsm8k" /
                                                                                            "test.jsonl")}])


def test_too_few_texts_to_hold_out_fail_before_training(shared_data, tmp_path, filtered):
    config = QualityTrainConfig(workdir=str(tmp_path), held_out=0.01, negatives={"input": [str(filtered.folder)]},
                                positives=[{"kind": "gsm8k", "path": str(shared_data / "gsm8k" / "test.jsonl"),
                                            "sample": 3}])
    with pytest.raises(ValueError, match="held_out: 3 positive texts give"):
        execute_stage(QualityTrainStage(config), tmp_path)
    assert not (tmp_path / "quality" / "classifier").exists()


def test_scoring_without_a_classifier_or_with_two_folders_of_one_dump_names_the_field(trained, tmp_path):
    config, model = trained
    with pytest.raises(ValidationError, match="model: no trained classifier in"):
        QualityScoreConfig(workdir=str(tmp_path), input=[str(tmp_path)])
    (tmp_path / "dump" / "a").mkdir(parents=True)
    (tmp_path / "dump" / "b").mkdir()
    with pytest.raises(ValidationError, match="input: two folders of one dump"):
        QualityScoreConfig(model=str(model.path), input=[str(tmp_path / "dump" / "a"), str(tmp_path / "dump" / "b")])


def test_a_document_without_text_fails_the_stage_naming_the_file_and_writes_nothing(trained, spark, tmp_path):
    import pyarrow as pa

    config, model = trained
    folder = tmp_path / DUMP / "scrubbed"
    folder.mkdir(parents=True)
    pq.write_table(pa.table({"id": ["a", "b"], "text": ["Some text.", None]}), folder / "part-00000.parquet")
    score_config = QualityScoreConfig(workdir=str(tmp_path), model=str(model.path), input=[str(folder)], mlflow=False)
    (stage,) = score_stages(score_config)
    with pytest.raises(Exception, match=r"part-00000\.parquet: document 'b' has no text"):
        execute_stage(stage, tmp_path, spark)
    assert not (tmp_path / DUMP / "quality_filtered").exists()
    assert not [p for p in (tmp_path / DUMP).iterdir() if p.name.startswith(".quality_filtered")]
