"""The tool-use sources in the conversation stage, through the CLI: stats with drops, the tool build and
its no-tool control split alike, answers kept, a rebuilt index rebuilds the set, config errors."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from fineforge.flows.cli import app
from fineforge.tasks.conversations.corpus_search import NOT_IN_RESULTS
from fineforge.tasks.search.config import SearchIndexConfig
from fineforge.tasks.search.job import build_search_index

runner = CliRunner()


def config_values(shared_data, workdir, corpus, name: str, tool: bool = True) -> dict:
    return {
        "workdir": str(workdir), "name": name, "tokenizer": "bytes", "context_length": 4096, "val_fraction": 0.2,
        "sources": [
            {"kind": "corpus_search", "name": "facts", "workdir": str(corpus), "k": 2, "per_document": 2,
             "tool": tool, "limit": 100},
            {"kind": "code_tasks", "name": "code", "count": 100, "tool": tool,
             "words": str(shared_data / "lid" / "lingua-sentences" / "en.txt")},
        ],
    }


def run_build(tmp_path, values) -> tuple[int, str]:
    config = tmp_path / f"config-{values['name']}.json"
    config.write_text(json.dumps(values))
    result = runner.invoke(app, ["conversations", "build", "--config", str(config)])
    return result.exit_code, result.output


def kept_records(out_dir) -> dict[str, list[dict]]:
    return {split: [json.loads(line) for line in (out_dir / f"{split}.jsonl").read_text().splitlines()]
            for split in ("train", "val")}


@pytest.fixture(scope="module")
def built(shared_data, search_corpus, tmp_path_factory):
    """The tool build and its control, from the same sources."""
    tmp = tmp_path_factory.mktemp("tool-sources")
    for name, tool in (("tools", True), ("direct", False)):
        code, output = run_build(tmp, config_values(shared_data, tmp / "work", search_corpus, name, tool))
        assert code == 0, output
    return tmp


def test_stats_count_the_questions_not_found_by_search(built):
    stats = json.loads((built / "work" / "conversations" / "tools" / "stats.json").read_text())
    facts, code = stats["sources"]
    assert facts["conversations_out"] == 100 and facts["dropped"][NOT_IN_RESULTS] > 0
    assert facts["conversations_in"] == facts["conversations_out"] + sum(facts["dropped"].values())
    assert code["conversations_out"] == 100 and not code["dropped"]
    assert stats["conversations_val"] > 0 and not stats["changed"]


def test_the_control_build_asks_the_same_questions_in_the_same_splits(built):
    tools, direct = (kept_records(built / "work" / "conversations" / name) for name in ("tools", "direct"))
    for split in ("train", "val"):
        assert [(r["id"], r["messages"][0], r["answer"]) for r in tools[split]] == \
               [(r["id"], r["messages"][0], r["answer"]) for r in direct[split]]
        assert all(r["answer"] for r in tools[split])
        assert all(r["messages"][1]["content"] == f"The answer is {r['answer']}." for r in direct[split])
        assert all("<OUTPUT_START>" in r["messages"][1]["content"] for r in tools[split])


def test_a_rebuilt_search_index_rebuilds_the_conversations(built, shared_data, search_corpus, tmp_path):
    values = config_values(shared_data, tmp_path / "work", search_corpus, "again")
    values["sources"] = values["sources"][:1]
    assert run_build(tmp_path, values)[0] == 0
    code, output = run_build(tmp_path, values)
    assert code == 0 and "skipped: already complete" in output
    try:
        build_search_index(search_corpus, SearchIndexConfig(workdir=str(search_corpus), passage_words=120))
        code, output = run_build(tmp_path, values)
        assert code == 0 and "skipped" not in output
    finally:
        build_search_index(search_corpus, SearchIndexConfig(workdir=str(search_corpus)))


@pytest.mark.parametrize(
    ("source", "change", "message"),
    [
        (0, {"workdir": "/nonexistent"}, "no search index in /nonexistent: build it with `fineforge search build"),
        (0, {"dumps": ["CC-MAIN-1999-01"]}, "dumps: ['CC-MAIN-1999-01'] are not in the search index"),
        (0, {"facts": ["date"]}, "sources.0.corpus_search.facts.0"),
        (1, {"executor": "calculator"}, "executor: the calculator runs arithmetic only"),
        (1, {"words": None}, "words: the tasks ['count_characters', 'count_letter'] need a text file of words"),
        (1, {"words": "/nope.txt"}, "sources.1.code_tasks.words"),
        (1, {"tasks": ["spelling"]}, "sources.1.code_tasks.tasks.0"),
    ],
)
def test_a_wrong_tool_source_fails_before_any_work_naming_the_field(shared_data, search_corpus, tmp_path, source,
                                                                   change, message):
    values = config_values(shared_data, tmp_path / "work", search_corpus, "bad")
    values["sources"][source].update(change)
    code, output = run_build(tmp_path, values)
    assert code == 2 and message in output, output
    assert not (tmp_path / "work").exists()
