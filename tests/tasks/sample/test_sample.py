"""The sample stage: the pure per-document choice, and the Spark job through the stage contract on real text."""

from __future__ import annotations

import random

import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from fineforge.tasks.common.documents import parquet_files
from fineforge.tasks.common.stage import StageOutput, execute_stage, load_output
from fineforge.tasks.sample.config import SampleConfig
from fineforge.tasks.sample.documents import keep
from fineforge.tasks.sample.job import NOT_SAMPLED, SampleStage
from fineforge.tasks.tokens.documents import validation_split
from testkit.dedup_corpus import real_texts, write_documents

IDS = [f"<urn:uuid:{i:012x}-warc>" for i in range(20_000)]


def test_keep_is_a_deterministic_seeded_fraction_of_ids():
    tenth = {doc_id for doc_id in IDS if keep(doc_id, 0.1, seed=0)}
    assert 0.09 < len(tenth) / len(IDS) < 0.11
    assert tenth == {doc_id for doc_id in IDS if keep(doc_id, 0.1, seed=0)}
    assert tenth < {doc_id for doc_id in IDS if keep(doc_id, 0.5, seed=0)}
    other_seed = {doc_id for doc_id in IDS if keep(doc_id, 0.1, seed=1)}
    assert 0.005 < len(tenth & other_seed) / len(IDS) < 0.015  # independent: about 0.1 * 0.1
    # independent of the train/validation split, which hashes the bare id
    validation = {doc_id for doc_id in IDS if validation_split(doc_id, 0.1) == "val"}
    assert 0.005 < len(tenth & validation) / len(IDS) < 0.015


@pytest.mark.parametrize("values", [{"fraction": 0}, {"fraction": 1.5}, {"fraction": 0.1, "input": "../x"},
                                    {"fraction": 0.1, "seeds": 2}])
def test_bad_settings_are_refused(values):
    with pytest.raises(ValidationError):
        SampleConfig(**values)


@pytest.fixture(scope="module")
def scrubbed(shared_data, tmp_path_factory) -> StageOutput:
    """Real documents in three part files, committed as a `scrubbed` stage output (what the sample reads)."""
    workdir = tmp_path_factory.mktemp("sample")
    texts = random.Random(3).sample(real_texts(shared_data), 600)
    write_documents(texts, workdir / "CC-MAIN-2024-22" / "scrubbed", rows_per_file=250)
    (workdir / "CC-MAIN-2024-22" / "scrubbed" / "stats.json").write_text('{"fingerprint": "f00"}')
    return load_output(workdir, "CC-MAIN-2024-22", "scrubbed")


def test_sample_stage_keeps_exactly_the_chosen_documents(spark, scrubbed):
    workdir = scrubbed.path.parents[1]
    config = SampleConfig(fraction=0.25, seed=7)
    output = execute_stage(SampleStage(config, [scrubbed], scrubbed.group), workdir, spark)
    assert output.path == workdir / "CC-MAIN-2024-22" / "sampled"
    source = pq.read_table(parquet_files([scrubbed.path])).to_pylist()
    expected = [row for row in source if keep(row["id"], 0.25, seed=7)]
    kept = pq.read_table(parquet_files([output.path])).to_pylist()
    assert [row["id"] for row in kept] == [row["id"] for row in expected]  # same order, same documents
    assert all(row["text"] == expected[n]["text"] and row["url"] == expected[n]["url"] for n, row in enumerate(kept))
    stats = output.statistics
    assert stats["documents_in"] == len(source) and stats["documents_out"] == len(kept)
    assert stats["dropped"] == {NOT_SAMPLED: len(source) - len(kept)} and stats["input_files"] == 3
    assert 0.18 < len(kept) / len(source) < 0.32

    assert execute_stage(SampleStage(config, [scrubbed], scrubbed.group), workdir, spark).skipped
    another = execute_stage(SampleStage(config.model_copy(update={"seed": 8}), [scrubbed], scrubbed.group),
                            workdir, spark)
    assert not another.skipped and another.fingerprint != output.fingerprint
