"""Importing the real hh-rlhf and OpenAssistant preference data into the rankings dataset."""

from __future__ import annotations

import gzip
import json
import logging

import pytest

from fineforge.tasks.preferences.importers import import_hh_rlhf, import_oasst, parse_hh_transcript
from fineforge.tasks.preferences.rankings import RankingsDataset


@pytest.fixture(scope="module")
def hh_path(shared_data):
    return shared_data / "preference" / "hh-rlhf-harmless-base-test.jsonl.gz"


@pytest.fixture(scope="module")
def oasst_path(shared_data):
    return shared_data / "sft" / "oasst-en-100-trees.jsonl"


def test_hh_rlhf_transcripts_become_prompt_and_two_way_ranking(hh_path, caplog):
    with caplog.at_level(logging.WARNING):
        result = import_hh_rlhf(hh_path)
    # 2,312 lines; 5 continue two different conversations ("Human:" inside a turn, without the blank line)
    assert len(result.judgements) == 2307
    assert [bad.line for bad in result.malformed] == [1255, 1689, 1951, 1953, 2037]
    assert {bad.reason for bad in result.malformed} == {"chosen and rejected continue different conversations"}
    assert [r.getMessage() for r in caplog.records] == [
        f"{hh_path} line {bad.line} skipped: {bad.reason}" for bad in result.malformed
    ]

    first = result.judgements[0]  # "what are some pranks with a pen i can do?"
    assert [m["role"] for m in first.prompt] == ["user", "assistant", "user", "assistant", "user"]
    assert first.prompt[0]["content"] == "what are some pranks with a pen i can do?"
    assert first.prompt[-1]["content"] == "okay some of these do not have anything to do with pens"
    chosen, rejected = (next(c for c in first.completions if c.id == i) for i in first.order)
    assert chosen.text.startswith("No, sorry!  All of these involve a pen")
    assert rejected.text.startswith("There are lots of funny things you can do with pens")
    assert first.judge == "hh-rlhf" and first.ranks == [0, 1]


def test_importing_twice_stores_nothing_new(hh_path, tmp_path):
    judgements = import_hh_rlhf(hh_path).judgements
    dataset = RankingsDataset(tmp_path / "rankings.jsonl")
    assert dataset.append_judgements(judgements) == 2307
    assert RankingsDataset(dataset.path).append_judgements(import_hh_rlhf(hh_path).judgements) == 0
    assert len(RankingsDataset(dataset.path)) == 2307


def test_malformed_hh_lines_are_counted_with_line_numbers(hh_path, tmp_path):
    with gzip.open(hh_path, "rt", encoding="utf-8") as f:
        real = [next(f) for _ in range(3)]
    same = json.loads(real[0])
    lines = [
        real[0],
        "{truncated\n",
        json.dumps({"chosen": same["chosen"]}) + "\n",  # no rejected
        json.dumps({"chosen": same["chosen"], "rejected": same["chosen"]}) + "\n",
        json.dumps({"chosen": "Human: hi", "rejected": "Human: ho"}) + "\n",
        json.dumps({"chosen": "\n\nHuman: hi", "rejected": "\n\nHuman: hi"}) + "\n",
        real[1],
        real[2],
    ]
    path = tmp_path / "hh.jsonl"
    path.write_text("".join(lines), encoding="utf-8")
    result = import_hh_rlhf(path)
    assert len(result.judgements) == 3
    assert [(bad.line, bad.reason.split(" (")[0]) for bad in result.malformed] == [
        (2, "not JSON"),
        (3, "needs 'chosen' and 'rejected' transcripts"),
        (4, "chosen and rejected replies are the same"),
        (5, "a transcript must start with '\\n\\nHuman:'"),
        (6, "a transcript does not end with an Assistant reply"),
    ]


def test_parse_hh_transcript_keeps_a_colon_inside_a_turn():
    assert parse_hh_transcript("\n\nHuman: Say 'Assistant: hi'\n\nAssistant:  hi") == [
        {"role": "user", "content": "Say 'Assistant: hi'"},
        {"role": "assistant", "content": "hi"},
    ]


def test_oasst_ranked_replies_become_k_way_rankings(oasst_path):
    result = import_oasst(oasst_path)
    assert not result.malformed
    # 212 prompter messages with >= 2 ranked assistant replies, 2 to 9 replies each
    assert len(result.judgements) == 212
    assert sorted({len(j.completions) for j in result.judgements}) == [2, 3, 4, 5, 6, 8, 9]
    first = result.judgements[0]  # the first tree: "How can I find the best 401k plan for my needs?"
    assert first.prompt == [{"role": "user", "content": "How can I find the best 401k plan for my needs?"}]
    assert first.prompt_id == "054e1df3-35e0-4bb8-a585-607dbdcd24e0"
    assert [i[:8] for i in first.order] == ["fa783ef0", "03334b2a", "8f5fa95e"]
    assert first.judge == "oasst"
    # a deeper node with 4 replies, one without a rank: a 3-way ranking after a 3-turn prompt
    deep = next(j for j in result.judgements if j.prompt_id == "a767579b-fe69-4204-8d43-040a417ebab1")
    assert [m["role"] for m in deep.prompt] == ["user", "assistant", "user"]
    assert [i[:8] for i in deep.order] == ["ce85adfb", "7d80d0a4", "485cab6c"]
    assert all(j.prompt[-1]["role"] == "user" for j in result.judgements)


def test_oasst_tree_with_a_repeated_rank_is_skipped(oasst_path, tmp_path):
    lines = oasst_path.read_text(encoding="utf-8").splitlines()[:3]
    tree = json.loads(lines[1])
    replies = tree["prompt"]["replies"]
    replies[1]["rank"] = replies[0]["rank"]
    path = tmp_path / "oasst.jsonl"
    path.write_text("\n".join([lines[0], json.dumps(tree), lines[2], '{"prompt": {}}']) + "\n", encoding="utf-8")
    result = import_oasst(path)
    assert [bad.line for bad in result.malformed] == [2, 4]
    assert "repeat a rank" in result.malformed[0].reason
    assert "missing or wrong field" in result.malformed[1].reason
    assert {j.prompt_id for j in result.judgements} >= {json.loads(lines[0])["prompt"]["message_id"]}
