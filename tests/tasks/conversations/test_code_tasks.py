"""Code-task conversations: real words, outputs of the real sandbox, answers checked from the question alone."""

from __future__ import annotations

import re

import pytest

from fineforge.model.chat import ChatTemplate, Conversation
from fineforge.model.tokenizer import CODE_END, CODE_START, OUTPUT_END, OUTPUT_START, load_tokenizer
from fineforge.model.tools.sandbox import PythonSandbox
from fineforge.model.verifiers import get_verifier
from fineforge.tasks.conversations.code_tasks import (
    CODE_TASKS,
    TOOL_OUTPUT_MISMATCH,
    code_problems,
    code_task_conversations,
    problem_records,
    read_words,
    sandbox_outputs,
)
from fineforge.tasks.conversations.records import SourceCounts
from fineforge.tasks.conversations.tool_turns import stated_answer

CALL = re.compile(re.escape(CODE_START) + "(.*)" + re.escape(CODE_END) + re.escape(OUTPUT_START) + "(.*)"
                  + re.escape(OUTPUT_END) + r"(.*)", re.DOTALL)


@pytest.fixture(scope="module")
def words(shared_data):
    return read_words(shared_data / "lid" / "lingua-sentences" / "en.txt")


def expected_answer(task: str, question: str) -> str:
    """The answer worked out from the question's text alone."""
    if task == "count_letter":
        letter, word = re.search(r"'(\w)'s? .*'(\w+)'\?$", question).groups()
        return str(word.count(letter))
    if task == "count_characters":
        return str(len(re.search(r"'(\w+)'", question).group(1)))
    if task == "arithmetic":
        a, op, b = re.search(r"(\d+) ([*+]) (\d+)", question).groups()
        return str(int(a) * int(b) if op == "*" else int(a) + int(b))
    return str(sorted(int(n) for n in re.findall(r"\d+", question)))


def test_tool_conversations_show_the_real_sandbox_output_and_the_right_answer(words):
    counts = SourceCounts()
    records = list(code_task_conversations(80, words=words, seed=5, counts=counts))
    assert len(records) == 80 and not counts.dropped
    template = ChatTemplate(load_tokenizer("bytes"))
    letter_verifier = get_verifier("letter_count")
    for record in records:
        task = record.id.rsplit("-", 1)[1]
        question, reply = (m["content"] for m in record.messages)
        code, output, after = CALL.fullmatch(reply).groups()
        assert record.answer == expected_answer(task, question) == output == stated_answer(reply)
        assert after == f"The answer is {record.answer}."
        if task == "count_letter":  # the RL verifier parses these questions too
            assert letter_verifier.reward({"question": question}, reply) == 1.0
        ids, mask = template.render(Conversation.from_messages(record.messages))
        # trained: the code, the answer, CODE_START/END and <|im_end|>; the output is masked
        assert sum(mask) == len(code) + len(after) + 3
    assert {r.id.rsplit("-", 1)[1] for r in records} == set(CODE_TASKS)
    counted = [re.findall(r"'(\w{4,})'", r.messages[0]["content"]) for r in records if "count" in r.id]
    assert counted and all(w in words for found in counted for w in found)


def test_same_seed_same_conversations_and_the_control_answers_directly(words):
    def as_json(records):
        return [r.to_json() for r in records]

    tool = list(code_task_conversations(24, words=words, seed=1))
    assert as_json(tool) == as_json(code_task_conversations(24, words=words, seed=1))
    assert as_json(tool) != as_json(code_task_conversations(24, words=words, seed=2))
    control = list(code_task_conversations(24, words=words, seed=1, tool=False))
    assert [(r.id, r.messages[0], r.answer) for r in control] == [(r.id, r.messages[0], r.answer) for r in tool]
    assert all(r.messages[1]["content"] == f"The answer is {r.answer}." for r in control)


def test_the_calculator_runs_arithmetic_without_a_process():
    records = list(code_task_conversations(10, tasks=["arithmetic"], executor="calculator", seed=3))
    for record in records:
        digits = [len(n) for n in re.findall(r"\d+", record.messages[0]["content"])]
        assert all(6 <= d <= 12 for d in digits) and len(digits) == 2
        assert CALL.fullmatch(record.messages[1]["content"]).group(2) == record.answer
    with pytest.raises(ValueError, match="need words"):
        list(code_task_conversations(1, tasks=["count_letter"]))


def test_a_run_that_fails_drops_its_conversations_and_counts_them(words):
    sandbox = PythonSandbox(unsafe=True)
    outputs = sandbox_outputs(sandbox, ["print(2 + 2)", "print(1 / 0)", "print('abc'.count('b'))"])
    assert outputs[0] == "4" and outputs[1].startswith("error: ZeroDivisionError") and outputs[2] == "1"
    crashed = sandbox_outputs(sandbox, ["print(1)", "import os; os._exit(3)"])
    assert all(o.startswith("error:") and "exit status 3" in o for o in crashed)

    problems = list(enumerate(code_problems(3, ["count_letter"], words, seed=0)))
    real = sandbox_outputs(sandbox, [p.code for _, p in problems])
    counts = SourceCounts()
    kept = list(problem_records(problems, [real[0], crashed[1], real[2]], 0, "code_tasks", counts))
    assert [r.id for r in kept] == ["code_tasks-0-0-count_letter", "code_tasks-0-2-count_letter"]
    assert counts.dropped == {TOOL_OUTPUT_MISMATCH: 1}
