"""Pieces of assistant turns that call a tool: the call with its output block, and the final answer line.

The markup is the chat format's (`model/chat.py`): `<CODE_START>code<CODE_END>` or
`<SEARCH_START>query<SEARCH_END>`, followed directly by `<OUTPUT_START>output<OUTPUT_END>`, the text the
runtime pastes (masked out of the loss). Every tool-use generator ends its turn with "The answer is X.",
with the tool and in its no-tool control variant alike, so one rule reads the answer of both.
"""

from __future__ import annotations

import re

from fineforge.model.tokenizer import CODE_END, CODE_START, OUTPUT_END, OUTPUT_START, SEARCH_END, SEARCH_START

ANSWER_LINE = "The answer is {answer}."
ANSWER_PATTERN = re.compile(r"The answer is (.+?)\.?\s*$", re.DOTALL)


def code_call(code: str, output: str) -> str:
    """A python tool call and the output the runtime pasted after it."""
    return f"{CODE_START}{code}{CODE_END}{OUTPUT_START}{output}{OUTPUT_END}"


def search_call(query: str, output: str) -> str:
    """A search tool call and the results the runtime pasted after it."""
    return f"{SEARCH_START}{query}{SEARCH_END}{OUTPUT_START}{output}{OUTPUT_END}"


def answer_line(answer: str) -> str:
    """The turn's last line: "The answer is X."."""
    return ANSWER_LINE.format(answer=answer)


def stated_answer(reply: str) -> str | None:
    """The X of a reply ending "The answer is X." (the text after the last tool output), or None."""
    after_tools = reply.rsplit(OUTPUT_END, 1)[-1]
    match = ANSWER_PATTERN.search(after_tools.strip())
    return match.group(1).strip() if match else None
