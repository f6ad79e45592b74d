"""A verifiable task that a tiny random model learns in a few RL steps, for the RL stage's tests.

`DIGITS`: the reward of a finished reply is the share of its characters that are digits; a random bytes
model writes about one in twenty-five and seldom ends its reply, so with a format reward for ending (the
verifier's format check accepts every reply) a few policy steps raise the reward. `TOOL_RESULT`: the tool
caller's python call printed the answer. Workers under torchrun load them as `testkit.rl:DIGITS` (run from
the repository root).
"""

from __future__ import annotations

import json
from pathlib import Path

from fineforge.model.verifiers import Metadata, Verifier, last_tool_output_number, reference_number, require_fields
from testkit.tool_caller import PLAIN_QUESTION, PYTHON_QUESTION

QUESTION = "Write some digits."


def digit_share(metadata: Metadata, completion: str) -> float:
    """The share of the reply's characters that are ASCII digits (0 for an empty reply)."""
    return sum(ch in "0123456789" for ch in completion) / len(completion) if completion else 0.0


DIGITS = Verifier("digits", digit_share, require_fields("answer"), lambda completion: True,
                  "share of digits in the reply")


def write_digit_prompts(path: Path, count: int, question: str = QUESTION) -> Path:
    """`count` prompt records in the conversation stage's form (messages + answer), ids `digits-<i>`."""
    with open(path, "w", encoding="utf-8") as f:
        for i in range(count):
            record = {"id": f"digits-{i}", "source": "digits", "answer": str(i % 10),
                      "messages": [{"role": "user", "content": f"{question} ({i})"}]}
            f.write(json.dumps(record) + "\n")
    return path


def tool_result_reward(metadata: Metadata, completion: str) -> float:
    """1 when the number the reply's last tool call printed is the answer."""
    return float(last_tool_output_number(completion) == reference_number(metadata))


TOOL_RESULT = Verifier("tool_result", tool_result_reward, require_fields("answer"),
                       description="the last tool output is the answer")


def write_tool_prompts(path: Path, copies: int = 2) -> Path:
    """Prompts the tool caller (testkit/tool_caller.py) answers with a python call (17*3 = 51), or plainly."""
    records = [{"id": "mul", "question": PYTHON_QUESTION, "answer": "51"},
               {"id": "plain", "question": PLAIN_QUESTION, "answer": "2"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in records * copies))
    return path
