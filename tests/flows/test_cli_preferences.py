"""`fineforge preferences import` on the real hh-rlhf and OpenAssistant files."""

from __future__ import annotations

import logging

import pytest
from typer.testing import CliRunner

from fineforge.flows.cli import app
from fineforge.tasks.preferences.rankings import RankingsDataset


def table_counts(output: str) -> dict[str, str]:
    """The rows `name | count` of the printed table."""
    rows = [line.strip("│┃ ").split("│") for line in output.splitlines() if line.count("│") == 3]
    return {name.strip(): count.strip() for name, count in rows}


@pytest.fixture
def invoke():
    def run(*args: str):
        return CliRunner().invoke(app, ["preferences", "import", *args], env={"COLUMNS": "200"})

    return run


def test_hh_rlhf_import_counts_and_reports_malformed_lines_and_a_second_import_adds_nothing(
    invoke, shared_data, tmp_path, caplog
):
    source = shared_data / "preference" / "hh-rlhf-harmless-base-test.jsonl.gz"
    output = tmp_path / "rankings.jsonl"
    with caplog.at_level(logging.WARNING):
        first = invoke("--hh-rlhf", str(source), "--output", str(output))
    assert first.exit_code == 0, first.output
    assert table_counts(first.output) == {"judgements read": "2,307", "stored (new)": "2,307", "already stored": "0",
                                          "malformed lines skipped": "5", "judgements in the dataset": "2,307"}
    assert "malformed lines (reasons logged above): 1255, 1689, 1951, 1953, 2037" in first.output
    assert f"{source} line 1255 skipped: chosen and rejected continue different conversations" in caplog.messages

    again = invoke("--hh-rlhf", str(source), "--output", str(output))
    assert table_counts(again.output)["stored (new)"] == "0"
    assert table_counts(again.output)["already stored"] == "2,307"
    assert len(output.read_text().splitlines()) == 2307


def test_oasst_import_appends_to_the_same_dataset(invoke, shared_data, tmp_path):
    output = tmp_path / "rankings.jsonl"
    hh = invoke("--hh-rlhf", str(shared_data / "preference" / "hh-rlhf-harmless-base-test.jsonl.gz"), "-o", str(output))
    assert hh.exit_code == 0
    result = invoke("--oasst", str(shared_data / "sft" / "oasst-en-100-trees.jsonl"), "-o", str(output))
    assert result.exit_code == 0, result.output
    assert table_counts(result.output)["stored (new)"] == "212"
    assert table_counts(result.output)["judgements in the dataset"] == "2,519"
    assert "malformed lines (" not in result.output
    assert {j.judge for j in RankingsDataset(output)} == {"hh-rlhf", "oasst"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "give exactly one of --hh-rlhf FILE and --oasst FILE"),
        (["--hh-rlhf", "a.jsonl", "--oasst", "b.jsonl"], "give exactly one of --hh-rlhf FILE and --oasst FILE"),
        (["--oasst", "missing.jsonl"], "--oasst: file not found: missing.jsonl"),
    ],
)
def test_bad_options_fail_before_anything_is_written(invoke, tmp_path, args, message):
    output = tmp_path / "rankings.jsonl"
    result = invoke(*args, "--output", str(output))
    assert result.exit_code == 2 and message in result.output
    assert not output.exists()


def test_an_output_folder_is_refused(invoke, shared_data, tmp_path):
    result = invoke("--oasst", str(shared_data / "sft" / "oasst-en-100-trees.jsonl"), "--output", str(tmp_path))
    assert result.exit_code == 2 and "is a folder" in result.output
