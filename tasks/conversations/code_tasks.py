"""Code-tool conversations: questions a model gets wrong from its tokens and right by running code.

Models see tokens, not letters or digits, so they miscount letters and botch long arithmetic. Each
conversation asks one such question; the assistant writes one line of Python in
`<CODE_START>...<CODE_END>`, the output block holds what that line printed when it really ran, and the
turn ends "The answer is X.". The tasks:

- `count_letter`: "How many 'r' are in 'strawberry'?" over real words (a text file's words, e.g. lingua's
  English sentences); the letter is in the word three times in four, else absent (answer 0);
- `count_characters`: "How many characters are in 'strawberry'?";
- `arithmetic`: the product or sum of two numbers of 6 to 12 digits;
- `sort`: 4 to 8 numbers below 1000, smallest first.

The code runs in `PythonSandbox` (isolated where Linux namespaces allow; the code is the generator's own
one-liner of literals, so its limits-only mode is used where they do not), 64 one-liners per sandbox
process, each with a fresh namespace and its own captured output (a process per line costs ~0.1 s); or in
the calculator (`model/tools/calculator.py`, arithmetic only, no process at all). A run whose output is not the
answer computed here is dropped and counted (`tool_output_mismatch`). The control variant (`tool=False`)
answers directly, with the same questions. Problem i is task `tasks[i % len(tasks)]`; everything else is
drawn from the seed.
"""

from __future__ import annotations

import json
import logging
import random
import re
import string
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from fineforge.model.chat import ASSISTANT, USER
from fineforge.model.tools.calculator import calculator
from fineforge.model.tools.sandbox import PythonSandbox
from fineforge.tasks.conversations.records import ConversationRecord, SourceCounts, skip
from fineforge.tasks.conversations.tool_turns import answer_line, code_call

log = logging.getLogger(__name__)

CodeTask = Literal["count_letter", "count_characters", "arithmetic", "sort"]
CODE_TASKS: tuple[str, ...] = ("count_letter", "count_characters", "arithmetic", "sort")
WORD_TASKS = frozenset({"count_letter", "count_characters"})
Executor = Literal["sandbox", "calculator"]
TOOL_OUTPUT_MISMATCH = "tool_output_mismatch"

WORD = re.compile(r"\b[a-z]{4,14}\b")  # lower-case words of the file (capitalised ones are often names)
LETTER_PRESENT_SHARE = 0.75
DIGITS = (6, 12)
SORT_LENGTH, SORT_MAX = (4, 8), 999
CHUNK = 64  # problems whose code runs in one sandbox process

QUESTIONS: dict[str, tuple[str, ...]] = {
    "count_letter": ("How many '{letter}' are in '{word}'?",
                     "How many times does the letter '{letter}' appear in '{word}'?",
                     "How many '{letter}'s are in the word '{word}'?"),
    "count_characters": ("How many characters are in '{word}'?", "How many letters does '{word}' have?"),
    "arithmetic": ("What is {a} {op} {b}?", "Compute {a} {op} {b}.", "Calculate {a} {op} {b}."),
    "sort": ("Sort these numbers from smallest to largest: {numbers}.", "Put these numbers in ascending order: "
             "{numbers}."),
}


@dataclass(frozen=True)
class CodeProblem:
    """A question, the one line of Python that answers it, and the answer (what that line prints)."""

    task: str
    question: str
    code: str
    answer: str


def read_words(path: str | Path) -> list[str]:
    """The distinct lower-case words of 4-14 letters of a text file, sorted; ValueError when it has none."""
    words = sorted(set(WORD.findall(Path(path).read_text(encoding="utf-8", errors="replace"))))
    if not words:
        raise ValueError(f"{path}: no words of 4-14 lower-case letters a-z")
    return words


def count_letter(rng: random.Random, words: Sequence[str]) -> CodeProblem:
    word = rng.choice(words)
    absent = [c for c in string.ascii_lowercase if c not in word]
    letter = rng.choice(word) if rng.random() < LETTER_PRESENT_SHARE or not absent else rng.choice(absent)
    question = rng.choice(QUESTIONS["count_letter"]).format(letter=letter, word=word)
    return CodeProblem("count_letter", question, f"print({word!r}.count({letter!r}))", str(word.count(letter)))


def count_characters(rng: random.Random, words: Sequence[str]) -> CodeProblem:
    word = rng.choice(words)
    question = rng.choice(QUESTIONS["count_characters"]).format(word=word)
    return CodeProblem("count_characters", question, f"print(len({word!r}))", str(len(word)))


def big_number(rng: random.Random) -> int:
    digits = rng.randint(*DIGITS)
    return rng.randint(10 ** (digits - 1), 10**digits - 1)


def arithmetic(rng: random.Random, words: Sequence[str]) -> CodeProblem:
    a, b, op = big_number(rng), big_number(rng), rng.choice("*+")
    question = rng.choice(QUESTIONS["arithmetic"]).format(a=a, op=op, b=b)
    return CodeProblem("arithmetic", question, f"print({a} {op} {b})", str(a * b if op == "*" else a + b))


def sort_numbers(rng: random.Random, words: Sequence[str]) -> CodeProblem:
    numbers = [rng.randint(1, SORT_MAX) for _ in range(rng.randint(*SORT_LENGTH))]
    question = rng.choice(QUESTIONS["sort"]).format(numbers=", ".join(map(str, numbers)))
    return CodeProblem("sort", question, f"print(sorted({numbers}))", str(sorted(numbers)))


MAKERS: dict[str, Callable[[random.Random, Sequence[str]], CodeProblem]] = {
    "count_letter": count_letter, "count_characters": count_characters, "arithmetic": arithmetic,
    "sort": sort_numbers,
}


def code_problems(count: int, tasks: Sequence[str], words: Sequence[str], seed: int) -> Iterator[CodeProblem]:
    """`count` problems, task i % len(tasks) for problem i, the same ones for the same seed."""
    unknown = sorted(set(tasks) - set(MAKERS))
    if unknown or not tasks:
        raise ValueError(f"code tasks {unknown or tasks} unknown; choose from {', '.join(CODE_TASKS)}")
    if WORD_TASKS & set(tasks) and not words:
        raise ValueError(f"the tasks {sorted(WORD_TASKS & set(tasks))} need words")
    rng = random.Random(seed)
    for i in range(count):
        yield MAKERS[tasks[i % len(tasks)]](rng, words)


# One sandbox process runs a chunk of one-liners, each in a fresh namespace with its own captured stdout.
CHUNK_PROGRAM = """import contextlib, io, json
for code in {codes!r}:
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            exec(code, {{}})
        print(json.dumps(out.getvalue().rstrip("\\n")))
    except Exception as exc:
        print(json.dumps(f"error: {{type(exc).__name__}}: {{exc}}"))
"""


def sandbox_outputs(sandbox: PythonSandbox, codes: Sequence[str]) -> list[str]:
    """What each code printed, run in one sandbox process (the error text for all when that process fails)."""
    result = sandbox.run(CHUNK_PROGRAM.format(codes=list(codes)))
    lines = result.stdout.splitlines()
    if not result.ok or len(lines) != len(codes):
        return [f"error: {result.for_model()}"] * len(codes)
    return [json.loads(line) for line in lines]


def calculator_outputs(codes: Sequence[str]) -> list[str]:
    """What the calculator prints for each code (the refusal text for code that is not plain arithmetic)."""
    outputs = []
    for code in codes:
        try:
            outputs.append(calculator(code))
        except ValueError as exc:
            outputs.append(f"error: {exc}")
    return outputs


def code_runner(executor: Executor) -> Callable[[Sequence[str]], list[str]]:
    """A function from codes to their outputs: the python sandbox, or the calculator."""
    if executor == "calculator":
        return calculator_outputs
    sandbox = PythonSandbox(unsafe=True)  # runs only the generator's own one-liners of literals
    log.info("code tasks run in the python sandbox (%s)", "isolated" if sandbox.isolated else "limits only")
    return lambda codes: sandbox_outputs(sandbox, codes)


def assistant_turn(problem: CodeProblem, output: str | None) -> str:
    """The tool variant's turn (the call, the output, the answer), or the control's answer alone."""
    final = answer_line(problem.answer)
    return final if output is None else code_call(problem.code, output) + final


def problem_records(numbered: Sequence[tuple[int, CodeProblem]], outputs: Sequence[str | None], seed: int,
                    source: str, counts: SourceCounts) -> Iterator[ConversationRecord]:
    """The records of numbered problems and their outputs (None: the control variant); a problem whose output
    is not its answer is dropped and counted."""
    for (number, problem), output in zip(numbered, outputs, strict=True):
        origin = f"{source}#{number}"
        if output is not None and output.strip() != problem.answer:
            skip(counts, TOOL_OUTPUT_MISMATCH, origin, f"{problem.code!r} printed {output[:200]!r}, "
                 f"expected {problem.answer!r}")
            continue
        messages = [{"role": USER, "content": problem.question},
                    {"role": ASSISTANT, "content": assistant_turn(problem, output)}]
        yield ConversationRecord(id=f"{source}-{seed}-{number}-{problem.task}", source=source, messages=messages,
                                 answer=problem.answer, origin=origin)


def code_task_conversations(
    count: int, tasks: Sequence[str] = CODE_TASKS, words: Sequence[str] = (), tool: bool = True,
    executor: Executor = "sandbox", seed: int = 0, source: str = "code_tasks", counts: SourceCounts | None = None,
) -> Iterator[ConversationRecord]:
    """`count` code-task conversations (fewer if runs mismatch), the same ones for the same seed; each carries
    its answer."""
    counts = counts if counts is not None else SourceCounts()
    problems = enumerate(code_problems(count, tasks, words, seed))
    runner = code_runner(executor) if tool else None
    while chunk := [p for _, p in zip(range(CHUNK), problems, strict=False)]:
        outputs = runner([p.code for _, p in chunk]) if runner else [None] * len(chunk)
        yield from problem_records(chunk, outputs, seed, source, counts)
