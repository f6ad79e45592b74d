"""`fineforge search build` and `fineforge search "words"` end to end: a real Prefect flow run, real documents."""

from __future__ import annotations

import json
import re

import pytest
from typer.testing import CliRunner

from fineforge.flows.cli import app
from fineforge.tasks.search.config import index_path
from testkit.search_corpus import write_sample_corpus

runner = CliRunner()
WIKIPEDIA = "https://an.wikipedia.org/wiki/Escopete"


def fineforge(*args: str, code: int = 0) -> str:
    result = runner.invoke(app, list(args), env={"COLUMNS": "200"})
    assert result.exit_code == code, result.output
    return result.output


@pytest.fixture(scope="module")
def built(shared_data, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("search-cli")
    documents = write_sample_corpus(shared_data, workdir)
    return workdir, documents, fineforge("search", "build", "--workdir", str(workdir))


def test_build_indexes_every_dump(built):
    workdir, documents, output = built
    stats = json.loads((index_path(workdir) / "stats.json").read_text())
    assert sorted(stats["dumps"]) == sorted(documents)
    for dump in documents:
        assert re.search(rf"{dump}\s.*\bindexed\b", output), output
    assert "search it: fineforge search" in output


def test_search_prints_ranked_passages_with_url_and_score(built):
    workdir, _, _ = built
    output = fineforge("search", "Escopete", "-k", "2", "--workdir", str(workdir))
    first = output.splitlines()[0]
    assert re.fullmatch(rf"1\. \d+\.\d{{3}}  CC-MAIN-2024-22  {re.escape(WIKIPEDIA)}", first), first
    assert output.splitlines()[1].startswith("Escopete - Biquipedia")
    two = fineforge("search", "Canon photo gallery", "-k", "2", "--workdir", str(workdir))
    scores = [float(line.split()[1]) for line in two.splitlines() if re.match(r"\d+\. ", line)]
    assert len(scores) == 2 and scores[0] >= scores[1]
    only = fineforge("search", "-k", "3", "Escopete", "--workdir", str(workdir), "--dump", "CC-MAIN-2014-35")
    assert WIKIPEDIA not in only
    assert fineforge("search", "query", "build", "--workdir", str(workdir))  # the word "build" itself


def test_rebuild_is_skipped_by_a_real_flow_run(built):
    workdir, _, _ = built
    assert "skipped: already up to date" in fineforge("search", "build", "--workdir", str(workdir))


def test_missing_index_and_bad_input_are_one_error_line(built, tmp_path):
    workdir, _, _ = built
    assert fineforge("search", "anything", "--workdir", str(tmp_path), code=2) == (
        f"error: no search index in {tmp_path}: build it with `fineforge search build --workdir {tmp_path}`\n")
    assert fineforge("search", "build", "--workdir", str(tmp_path), code=2) == (
        f"error: invalid config: workdir: Value error, no corpus in {tmp_path}/<dump>/scrubbed/: build it first "
        f"with `fineforge data build --workdir {tmp_path}`\n")
    assert fineforge("search", "?!", "--workdir", str(workdir), code=2) == (
        "error: the query has no words to search for: '?!'\n")
    output = fineforge("search", "build", "--workdir", str(workdir), "--passage-overlap", "150", code=2)
    assert output == "error: invalid config: passage_overlap: Value error, must be below passage_words (150), got 150\n"
    assert not list(index_path(workdir).parent.glob(".*"))
