"""Knowledge-based refusal by interrogation (Llama 3's recipe): ask a chat model questions whose answers are
known, sample k answers to each, judge every answer, and turn the verdicts into SFT data. A question the model
answers correctly often enough keeps its answer; one it gets consistently wrong (a share of correct answers
at most `refuse_at_most`) is answered "I'm sorry, I don't believe I know." (or a configured refusal). Refusals
can be capped at a share of the SFT data (`max_refusal_share`; Llama 3 keeps them a minority): a model trained
on more refusals than answers learns to refuse everything.

Questions are JSONL, one per line: {"question", "answer", "id"?, "response"?}; `response` is the reply to train
on when the model knows the answer (default: the answer itself). A judge is `(answer, reply) -> bool`:
`normalised_match` (the default: a numeric answer is among the reply's numbers, any other answer appears in
the reply as whole words, case, accents and punctuation aside), `exact_match`, any registered with
`register_judge`, or a verifier of `model/verifiers.py` as `verifier:<name>` (e.g. `verifier:gsm8k`).

    questions = read_questions("facts.jsonl")
    interrogator = Interrogator(model, tokenizer, SamplingConfig(num_samples=4, temperature=1.0, seed=0))
    results = interrogator.ask_all(questions, get_judge("normalised_match"), batch_questions=16)
    records, left_out = sft_records(results, refuse_at_most=0.0, refusal=DEFAULT_REFUSAL, max_refusal_share=0.3)
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from fineforge.model.chat import USER, ChatTemplate
from fineforge.model.engine import Completion, Engine, Request, SamplingConfig, row_seed
from fineforge.model.gpt import GPT
from fineforge.model.tokenizer import IM_END, Tokenizer
from fineforge.model.verifiers import NUMBER_PATTERN, get_verifier, parse_number

DEFAULT_REFUSAL = "I'm sorry, I don't believe I know."
KNOWN, UNKNOWN = "known", "unknown"
VERIFIER_PREFIX = "verifier:"
MAX_QUESTION_ERRORS_SHOWN = 3

Judge = Callable[[str, str], bool]


class QuestionsError(ValueError):
    """A questions file that cannot be used as it is; the message names the lines."""


def normalise(text: str) -> str:
    """Lower case, accents and punctuation removed, whitespace collapsed: "Café-Paris!" -> "cafe paris"."""
    text = unicodedata.normalize("NFKD", text.casefold())
    text = "".join(c for c in text if not unicodedata.combining(c))
    return " ".join(re.sub(r"[^\w]+", " ", text).split())


def normalised_match(answer: str, reply: str) -> bool:
    """A numeric answer is one of the reply's numbers ("$1,200" == "1200.0"); any other answer appears in the
    reply as whole words after `normalise`."""
    number = parse_number(answer)
    if number is not None:
        return number in {parse_number(n) for n in NUMBER_PATTERN.findall(reply)}
    wanted = normalise(answer)
    return bool(wanted) and f" {wanted} " in f" {normalise(reply)} "


def exact_match(answer: str, reply: str) -> bool:
    """The whole reply is the answer, after `normalise`."""
    return normalise(answer) == normalise(reply)


JUDGES: dict[str, Judge] = {"normalised_match": normalised_match, "exact_match": exact_match}


def register_judge(name: str, judge: Judge, replace_existing: bool = False) -> None:
    """Make `judge` available by name (an existing name needs `replace_existing`)."""
    if name in JUDGES and not replace_existing:
        raise ValueError(f"a judge named {name!r} is already registered")
    JUDGES[name] = judge


def get_judge(name: str) -> Judge:
    """A registered judge, or `verifier:<name>`: the verifier's reward of the reply given {"answer"} is > 0."""
    if name.startswith(VERIFIER_PREFIX):
        verifier = get_verifier(name.removeprefix(VERIFIER_PREFIX))
        return lambda answer, reply: verifier.reward({"answer": answer}, reply) > 0
    if name not in JUDGES:
        raise ValueError(f"unknown judge {name!r}; choose one of {sorted(JUDGES)} or verifier:<name>")
    return JUDGES[name]


@dataclass(frozen=True)
class Question:
    """A question with its known answer, and the reply to train on when the model knows it."""

    id: str
    question: str
    answer: str
    response: str


def _question(number: int, line: str) -> Question:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise QuestionsError(f"not JSON ({exc.msg})") from None
    if not isinstance(record, dict):
        raise QuestionsError("not a JSON object")
    question, answer = record.get("question"), record.get("answer")
    if not isinstance(question, str) or not question.strip():
        raise QuestionsError("needs a non-empty string 'question'")
    if not isinstance(answer, str | int | float) or isinstance(answer, bool) or not str(answer).strip():
        raise QuestionsError("needs an 'answer' (text or a number)")
    response = record.get("response", str(answer))
    if not isinstance(response, str) or not response.strip():
        raise QuestionsError("'response', when given, must be non-empty text")
    return Question(str(record.get("id", f"q{number}")), question, str(answer), response)


def read_questions(path: str | Path) -> list[Question]:
    """Every question of a JSONL file, or a QuestionsError naming the bad lines (blank lines are skipped)."""
    questions, problems = [], []
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise QuestionsError(f"cannot read questions {path}: {exc}") from exc
    for number, line in enumerate(lines, 1):
        if line.strip():
            try:
                questions.append(_question(number, line))
            except QuestionsError as exc:
                problems.append(f"line {number}: {exc}")
    ids = [q.id for q in questions]
    repeated = sorted({i for i in ids if ids.count(i) > 1})
    if repeated:
        problems.append(f"ids used twice: {repeated[:MAX_QUESTION_ERRORS_SHOWN]}")
    if problems:
        shown = "; ".join(problems[:MAX_QUESTION_ERRORS_SHOWN]) + ("; ..." if len(problems) > 3 else "")
        raise QuestionsError(f"{path}: {len(problems)} problem(s): {shown}")
    if not questions:
        raise QuestionsError(f"{path}: no questions")
    return questions


@dataclass(frozen=True)
class QuestionResult:
    """The k sampled replies to one question, whether each was correct and whether each ended its turn."""

    question: Question
    replies: tuple[str, ...]
    correct: tuple[bool, ...]
    finished: tuple[bool, ...]

    @property
    def correct_fraction(self) -> float:
        return sum(self.correct) / len(self.correct)

    def verdict(self, refuse_at_most: float) -> str:
        """UNKNOWN when the share of correct replies is at most `refuse_at_most` (consistently wrong), else KNOWN."""
        return UNKNOWN if self.correct_fraction <= refuse_at_most else KNOWN

    def to_dict(self, refuse_at_most: float) -> dict:
        q = self.question
        return {"id": q.id, "question": q.question, "answer": q.answer, "verdict": self.verdict(refuse_at_most),
                "correct_fraction": self.correct_fraction, "correct": list(self.correct),
                "finished": list(self.finished), "replies": list(self.replies)}


def question_seed(seed: int, question_id: str) -> int:
    """A question's own sampler seed: its replies do not depend on the questions asked before it."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{question_id}".encode()).digest()[:8], "big")


class Interrogator:
    """Samples `sampling.num_samples` chat replies per question (each ends at `<|im_end|>`) and judges them."""

    def __init__(self, model: GPT, tokenizer: Tokenizer, sampling: SamplingConfig) -> None:
        self.engine = Engine(model, vocab_size=tokenizer.vocab_size)
        self.tokenizer, self.template = tokenizer, ChatTemplate(tokenizer)
        self.sampling = replace(sampling, stop_tokens=(tokenizer.encode_special(IM_END),))

    def _requests(self, question: Question) -> list[Request]:
        """The question's k rows; row i is seeded as `Engine.generate` seeds it with the question's own seed."""
        prompt = self.template.render_prompt([{"role": USER, "content": question.question}])
        if self.sampling.seed is None:
            return [Request(prompt)] * self.sampling.num_samples
        seed = question_seed(self.sampling.seed, question.id)
        return [Request(prompt, seed=row_seed(seed, i)) for i in range(self.sampling.num_samples)]

    def ask_all(self, questions: list[Question], judge: Judge, batch_questions: int = 1,
                progress: Callable[[int], None] | None = None) -> list[QuestionResult]:
        """Every question's result, in order; `batch_questions` questions (x k rows) are sampled in one batch
        (the replies do not depend on the batching); `progress(done)` after each batch."""
        results: list[QuestionResult] = []
        for start in range(0, len(questions), batch_questions):
            batch = questions[start : start + batch_questions]
            completions = self.engine.generate_batch([r for q in batch for r in self._requests(q)], self.sampling)
            k = self.sampling.num_samples
            for number, question in enumerate(batch):
                results.append(self._judged(question, completions[number * k : (number + 1) * k], judge))
            if progress is not None:
                progress(len(results))
        return results

    def _judged(self, question: Question, completions: list[Completion], judge: Judge) -> QuestionResult:
        replies = tuple(self.tokenizer.decode(c.tokens) for c in completions)
        finished = tuple(bool(c.stopped) for c in completions)
        correct = tuple(f and judge(question.answer, r) for f, r in zip(finished, replies, strict=True))
        return QuestionResult(question, replies, correct, finished)


def sft_record(result: QuestionResult, refuse_at_most: float, refusal: str) -> dict:
    """The question as a training conversation in the conversation stage's JSONL form: its known reply, or the
    refusal when the model got it consistently wrong (the answer is kept only with the reply that states it)."""
    q = result.question
    record = {"id": f"interrogation-{q.id}", "prompt": q.question}
    if result.verdict(refuse_at_most) == KNOWN:
        return {**record, "response": q.response, "answer": q.answer}
    return {**record, "response": refusal}


def refusals_allowed(known: int, unknown: int, max_refusal_share: float) -> int:
    """How many of `unknown` refusals a set with `known` answers keeps so that refusals are at most
    `max_refusal_share` of it (1: all of them)."""
    if max_refusal_share >= 1:
        return unknown
    return min(unknown, math.floor(max_refusal_share * known / (1 - max_refusal_share) + 1e-9))


def sft_records(results: list[QuestionResult], refuse_at_most: float, refusal: str, max_refusal_share: float = 1.0,
                seed: int | None = 0) -> tuple[list[dict], list[str]]:
    """Every known question's record and the refusals of the unknown ones, at most `max_refusal_share` of the
    records (a sample drawn with `seed` when there are more; None: fresh randomness), in question order; and
    the ids of the unknown questions left out."""
    unknown = [r.question.id for r in results if r.verdict(refuse_at_most) == UNKNOWN]
    random.Random(seed).shuffle(unknown)
    cut = refusals_allowed(len(results) - len(unknown), len(unknown), max_refusal_share)
    left_out = set(unknown[cut:])
    records = [sft_record(r, refuse_at_most, refusal) for r in results if r.question.id not in left_out]
    return records, [r.question.id for r in results if r.question.id in left_out]
