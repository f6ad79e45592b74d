"""GSM8K -> user question, assistant solution step by step, ending "The answer is N."

A GSM8K answer is the worked solution with calculator annotations (`48/2 = <<48/2=24>>24`) and a last
line `#### 24`. The annotations are either stripped, or turned into the python tool's call and output:
`48/2 = <CODE_START>print(48/2)<CODE_END><OUTPUT_START>24.0<OUTPUT_END>24`. The output is what Python
prints for the expression, computed by a small arithmetic evaluator (numbers and + - * / // % **, nothing
else runs); an annotation it cannot evaluate, or whose value differs from the annotated result, is
stripped instead and counted.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from fineforge.model.chat import ASSISTANT, USER
from fineforge.model.tokenizer import CODE_END, CODE_START, OUTPUT_END, OUTPUT_START
from fineforge.model.tools.calculator import evaluate_arithmetic
from fineforge.tasks.conversations.records import BAD_RECORD, ConversationRecord, SourceCounts, read_jsonl, skip

Calculator = Literal["strip", "tool"]
ANNOTATION = re.compile(r"<<([^<>]*)>>")
FINAL_ANSWER = re.compile(r"\n?####\s*(.+?)\s*$")
CALCULATOR_STRIPPED = "calculator_annotation_stripped"  # tool mode: annotations that could not become calls

def _as_tool_call(annotation: str) -> str | None:
    """`expr=result` as a python call with its printed output, or None when it cannot be one."""
    expression, _, result = annotation.rpartition("=")
    try:
        computed, annotated = evaluate_arithmetic(expression), float(result)
    except ValueError:
        return None
    if abs(computed - annotated) > 1e-6 * max(1.0, abs(annotated)):
        return None
    return f"{CODE_START}print({expression.strip()}){CODE_END}{OUTPUT_START}{computed}{OUTPUT_END}"


def solution_text(answer: str, calculator: Calculator, counts: SourceCounts) -> tuple[str, str] | None:
    """(assistant text, final answer) of a GSM8K answer, or None without its `#### N` line."""
    final = FINAL_ANSWER.search(answer)
    if final is None:
        return None
    steps = answer[: final.start()].rstrip()

    def replace(match: re.Match) -> str:
        if calculator == "strip":
            return ""
        call = _as_tool_call(match.group(1))
        if call is None:
            counts.changed[CALCULATOR_STRIPPED] += 1
            return ""
        return call

    number = final.group(1).replace(",", "")
    return f"{ANNOTATION.sub(replace, steps)}\nThe answer is {number}.", number


def gsm8k_conversations(
    path: str | Path, source: str, calculator: Calculator, counts: SourceCounts
) -> Iterator[ConversationRecord]:
    """One record per problem: the question, then the step-by-step solution; the final answer kept for RL."""
    split = Path(path).stem
    for number, problem in read_jsonl(path, counts):
        origin = f"{path}:{number}"
        question, answer = problem.get("question"), problem.get("answer")
        solved = solution_text(answer, calculator, counts) if isinstance(answer, str) else None
        if not isinstance(question, str) or solved is None:
            skip(counts, BAD_RECORD, origin, "needs a string question and an answer ending in '#### N'")
            continue
        text, final = solved
        messages = [{"role": USER, "content": question}, {"role": ASSISTANT, "content": text}]
        yield ConversationRecord(id=f"gsm8k-{split}-{number}", source=source, messages=messages, answer=final,
                                 origin=origin)
