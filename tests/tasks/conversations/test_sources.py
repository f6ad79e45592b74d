"""Conversation sources on the real files: OASST best-ranked paths, GSM8K solutions, user JSONL, bad lines."""

from __future__ import annotations

import json
import logging

import pytest

from fineforge.model.chat import Conversation
from fineforge.tasks.conversations.gsm8k import evaluate_arithmetic, gsm8k_conversations
from fineforge.tasks.conversations.oasst import oasst_conversations
from fineforge.tasks.conversations.records import BAD_RECORD, MALFORMED_JSON, SourceCounts
from fineforge.tasks.conversations.user_jsonl import jsonl_conversations


@pytest.fixture(scope="module")
def oasst_file(shared_data):
    return shared_data / "sft" / "oasst-en-100-trees.jsonl"


@pytest.fixture(scope="module")
def gsm8k_train(shared_data):
    return shared_data / "gsm8k" / "train.jsonl"


def write_lines(path, lines: list) -> str:
    path.write_bytes(b"".join((line if isinstance(line, bytes) else json.dumps(line).encode()) + b"\n"
                             for line in lines))
    return str(path)


def test_oasst_takes_the_best_ranked_reply_at_every_level(oasst_file):
    counts = SourceCounts()
    records = list(oasst_conversations(oasst_file, "oasst", counts))
    trees = [json.loads(line) for line in oasst_file.read_text().splitlines()]
    assert len(records) == len(trees) == 100 and not counts.dropped
    for record, tree in zip(records, trees, strict=True):
        assert record.id == tree["message_tree_id"]
        node = tree["prompt"]
        assert record.messages[0] == {"role": "user", "content": node["text"]}
        for message in record.messages[1:]:
            chosen = next(r for r in node["replies"] if r["text"] == message["content"])
            ranks = [r["rank"] for r in node["replies"] if r.get("rank") is not None]
            if chosen.get("rank") is not None:
                assert chosen["rank"] == min(ranks)
            else:
                assert not ranks and chosen is node["replies"][0]
            node = chosen
        assert record.messages[-1]["role"] == "assistant"
        Conversation.from_messages(record.messages)
    first = records[0].messages
    assert first[0]["content"] == "How can I find the best 401k plan for my needs?"
    assert first[1]["content"].startswith("The first step is to research your options.")
    assert sum(len(r.messages) > 2 for r in records) > 20  # multi-turn paths are followed


def test_oasst_skips_deleted_replies_and_unanswered_questions(tmp_path):
    def message(text, role, rank=None, replies=(), **extra):
        return {"text": text, "role": role, "rank": rank, "replies": list(replies), **extra}

    tree = message("Q1", "prompter", replies=[
        message("deleted best", "assistant", 0, deleted=True),
        message("unranked", "assistant"),
        message("second", "assistant", 1, replies=[message("Q2 never answered", "prompter")]),
    ])
    lone = message("nobody answered", "prompter")
    path = write_lines(tmp_path / "trees.jsonl", [{"message_tree_id": "t1", "prompt": tree},
                                                  {"message_tree_id": "t2", "prompt": lone}, {"no": "prompt"}])
    counts = SourceCounts()
    records = list(oasst_conversations(path, "oasst", counts))
    assert records[0].messages == [{"role": "user", "content": "Q1"}, {"role": "assistant", "content": "second"}]
    assert records[1].messages == [{"role": "user", "content": "nobody answered"}]  # rejected at validation
    assert counts.dropped == {BAD_RECORD: 1}


def test_gsm8k_step_by_step_with_calculator_as_python_calls(gsm8k_train):
    counts = SourceCounts()
    records = list(gsm8k_conversations(gsm8k_train, "gsm8k", "tool", counts))
    assert len(records) == 7473 and not counts.dropped and not counts.changed
    first = records[0]
    assert first.id == "gsm8k-train-1" and first.answer == "72"
    assert first.messages[1]["content"] == (
        "Natalia sold 48/2 = <CODE_START>print(48/2)<CODE_END><OUTPUT_START>24.0<OUTPUT_END>24 clips in May.\n"
        "Natalia sold 48+24 = <CODE_START>print(48+24)<CODE_END><OUTPUT_START>72<OUTPUT_END>72 clips altogether "
        "in April and May.\nThe answer is 72."
    )
    raw = [json.loads(line) for line in gsm8k_train.read_text().splitlines()]
    for record, problem in zip(records, raw, strict=True):
        solution = record.messages[1]["content"]
        assert solution.endswith(f"The answer is {record.answer}.") and "####" not in solution and "<<" not in solution
        assert problem["answer"].endswith(f"#### {record.answer}") or "," in problem["answer"].split("####")[1]
        Conversation.from_messages(record.messages)


def test_gsm8k_calculator_stripped(gsm8k_train):
    records = list(gsm8k_conversations(gsm8k_train, "gsm8k", "strip", SourceCounts()))
    assert records[1].messages[1]["content"] == (
        "Weng earns 12/60 = $0.2 per minute.\nWorking 50 minutes, she earned 0.2 x 50 = $10.\nThe answer is 10."
    )


def test_arithmetic_evaluator_runs_arithmetic_only():
    assert evaluate_arithmetic("48/2") == 24.0 and evaluate_arithmetic("2**3 - 7 % 4") == 5
    assert evaluate_arithmetic("(1.5 + .5) * -3") == -6.0 and evaluate_arithmetic("7 // 2") == 3
    for bad in ("__import__('os').system('true')", "x + 1", "2 ** 1000", "1/0", "[1, 2]", "48/2=24"):
        with pytest.raises(ValueError):
            evaluate_arithmetic(bad)


def test_malformed_lines_are_counted_logged_and_skipped(tmp_path, caplog):
    good = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}
    path = write_lines(tmp_path / "mine.jsonl", [good, b'{"messages": [', b"[1, 2]", b"\xff\xfe not utf-8", b"",
                                                 {"prompt": "2+2?", "response": "4", "id": "p1", "answer": 4},
                                                 {"text": "neither form"}])
    counts = SourceCounts()
    with caplog.at_level(logging.WARNING):
        records = list(jsonl_conversations(path, "mine", {}, counts))
    assert [r.id for r in records] == ["mine-1", "p1"]
    assert records[1].messages == [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]
    assert records[1].answer == "4"
    assert counts.dropped == {MALFORMED_JSON: 3, BAD_RECORD: 1}
    for line in (2, 3, 4, 7):
        assert f"mine.jsonl:{line}:" in caplog.text


def test_user_roles_are_renamed(tmp_path):
    line = {"messages": [{"role": "human", "content": "hi"}, {"role": "gpt", "content": "hello"},
                         {"role": "narrator", "content": "?"}]}
    path = write_lines(tmp_path / "sharegpt.jsonl", [line])
    record = next(jsonl_conversations(path, "sg", {"human": "user", "gpt": "assistant"}, SourceCounts()))
    assert [m["role"] for m in record.messages] == ["user", "assistant", "narrator"]  # narrator: unknown_role later
