"""Verifiers: the reward of a completion from its prompt's metadata, for RL on verifiable answers.

A verifier is a function `(metadata, completion) -> reward` plus, optionally, a format check (did the
completion state its answer in the expected form?) and a prompt check (does the metadata hold what the
reward needs? run on the whole prompt set before launch). Built-in verifiers, by name:

- `gsm8k`: the number after the last "The answer is" / "####" of the completion equals the reference
  (metadata `answer`: GSM8K's solution ending "#### N", or just N);
- `word_problems`: the same rule for the SFT generator's problems (`{"answer": "N", ...}`);
- `letter_count`: "How many 'r' are in 'strawberry'?" -> 3; the completion's final answer, or else the
  number its last tool output printed.

Numbers compare exactly after normalisation ("$1,200.00" == "1200", "0.5" == "1/2"). `score` gives a
completion that ran out of its token budget or never closed its turn a defined reward; `SafeScorer` turns
a verifier that raises into a zero reward, counted and logged once per kind of error.

    verifier = get_verifier("gsm8k")
    check_prompt_set(verifier, prompts)                    # before launch
    scorer = SafeScorer(verifier, RewardConfig(format_weight=0.1))
    reward = scorer(prompt, completion_text, finished=sample.stopped)
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from fineforge.model.tokenizer import OUTPUT_END, OUTPUT_START

log = logging.getLogger(__name__)

Metadata = Mapping[str, Any]
RewardFn = Callable[[Metadata, str], float]
FormatFn = Callable[[str], bool]
CheckFn = Callable[[Metadata], None]

# a number as people write it: optional sign and dollar sign, thousands commas, decimals or a fraction
_NUMBER = r"-?\s*\$?\s*-?\d(?:[\d,]*\d)?(?:\.\d+)?(?:\s*/\s*\d+)?"
NUMBER_PATTERN = re.compile(_NUMBER)
# the final-answer markers of the SFT data ("The answer is N") and of GSM8K ("#### N")
FINAL_ANSWER_PATTERN = re.compile(rf"(?:the answer is|####)\s*:?\s*\**\s*({_NUMBER})", re.IGNORECASE)
TOOL_OUTPUT_PATTERN = re.compile(re.escape(OUTPUT_START) + r"(.*?)" + re.escape(OUTPUT_END), re.DOTALL)
# "How many 'r' are in 'strawberry'?", "How many r's are in strawberry?", 'How many "r" in the word "berry"'
_QUOTE = "['\"‘’“”`]"
LETTER_QUESTION_PATTERN = re.compile(
    rf"how many\s+(?:times does\s+)?(?:the letter\s+)?{_QUOTE}?(\w){_QUOTE}?(?:'?s)?\s.*?"
    rf"\b(?:in|of)\s+(?:the word\s+)?{_QUOTE}?(\w+){_QUOTE}?",
    re.IGNORECASE | re.DOTALL,
)


class MissingAnswerError(ValueError):
    """A prompt's metadata lacks what its verifier needs (e.g. no reference answer)."""


def parse_number(text: str) -> Fraction | None:
    """The value of a number as written ("$1,200.00", "-3", "1/2", "18.0"), or None if it is not one."""
    cleaned = re.sub(r"[\s$,]", "", text)
    negative = cleaned.count("-") % 2 == 1
    cleaned = cleaned.replace("-", "")
    try:
        value = Fraction(cleaned)
    except (ValueError, ZeroDivisionError):
        return None
    return -value if negative else value


def final_answer(completion: str) -> Fraction | None:
    """The number after the completion's last "The answer is" or "####", or None when it states none."""
    matches = FINAL_ANSWER_PATTERN.findall(completion)
    return parse_number(matches[-1]) if matches else None


def last_tool_output_number(completion: str) -> Fraction | None:
    """The last number printed in the completion's last tool output, or None."""
    outputs = TOOL_OUTPUT_PATTERN.findall(completion)
    numbers = NUMBER_PATTERN.findall(outputs[-1]) if outputs else []
    return parse_number(numbers[-1]) if numbers else None


def states_final_answer(completion: str) -> bool:
    """Format check: the completion ends its reasoning with "The answer is N" (or "#### N")."""
    return final_answer(completion) is not None


def prompt_text(metadata: Metadata) -> str:
    """The prompt's text: `question`, `prompt`, or the last user message of `messages`."""
    for key in ("question", "prompt"):
        if isinstance(metadata.get(key), str):
            return metadata[key]
    messages = metadata.get("messages") or ()
    users = [m.get("content") for m in messages if isinstance(m, Mapping) and m.get("role") == "user"]
    if users and isinstance(users[-1], str):
        return users[-1]
    raise MissingAnswerError("no prompt text (a 'question', 'prompt' or user message in 'messages')")


def reference_number(metadata: Metadata) -> Fraction:
    """The reference answer of a GSM8K line ("... #### 18") or of a generated problem ("18", 18)."""
    answer = metadata.get("answer")
    if answer is None:
        raise MissingAnswerError("no 'answer' field")
    text = str(answer)
    if "####" in text:
        text = text.rsplit("####", 1)[1]
    value = parse_number(text.strip().rstrip("."))
    if value is None:
        raise MissingAnswerError(f"'answer' is not a number: {str(answer)[-60:]!r}")
    return value


def letter_count_question(metadata: Metadata) -> tuple[str, str]:
    """(letter, word) of a letter-counting prompt: metadata `letter` and `word`, or parsed from its text."""
    if metadata.get("letter") is not None and metadata.get("word") is not None:
        letter, word = str(metadata["letter"]), str(metadata["word"])
    else:
        match = LETTER_QUESTION_PATTERN.search(prompt_text(metadata))
        if match is None:
            raise MissingAnswerError("no 'letter' and 'word' fields, and the prompt is not a 'How many ...' question")
        letter, word = match.groups()
    if len(letter) != 1 or not word:
        raise MissingAnswerError(f"letter {letter!r} must be one character and word {word!r} non-empty")
    return letter, word


def reward_reference_number(metadata: Metadata, completion: str) -> float:
    """1 when the completion's final answer equals the reference number, else 0."""
    return float(final_answer(completion) == reference_number(metadata))


def reward_letter_count(metadata: Metadata, completion: str) -> float:
    """1 when the completion's count (final answer, else its last tool output) is right (case-insensitive)."""
    letter, word = letter_count_question(metadata)
    stated = final_answer(completion)
    if stated is None:
        stated = last_tool_output_number(completion)
    return float(stated == word.lower().count(letter.lower()))


@dataclass(frozen=True)
class Verifier:
    """A named reward: `reward(metadata, completion)`, an optional `format` check, and `check(metadata)`
    that raises MissingAnswerError when a prompt lacks what the reward needs."""

    name: str
    reward: RewardFn
    check: CheckFn
    format: FormatFn | None = None
    description: str = ""


def require_fields(*fields: str) -> CheckFn:
    """A prompt check that the metadata has every one of `fields` (not None)."""

    def check(metadata: Metadata) -> None:
        missing = [f for f in fields if metadata.get(f) is None]
        if missing:
            raise MissingAnswerError(f"missing field(s) {missing}")

    return check


VERIFIERS: dict[str, Verifier] = {}


def register_verifier(verifier: Verifier, replace: bool = False) -> Verifier:
    """Add a verifier to the registry under its name (an existing name needs `replace=True`)."""
    if verifier.name in VERIFIERS and not replace:
        raise ValueError(f"a verifier named {verifier.name!r} is already registered")
    VERIFIERS[verifier.name] = verifier
    return verifier


def get_verifier(name: str) -> Verifier:
    """The registered verifier called `name`."""
    try:
        return VERIFIERS[name]
    except KeyError:
        raise ValueError(f"unknown verifier {name!r}; choose one of {sorted(VERIFIERS)}") from None


def _check_reference_number(metadata: Metadata) -> None:
    reference_number(metadata)


def _check_letter_count(metadata: Metadata) -> None:
    letter_count_question(metadata)


register_verifier(
    Verifier("gsm8k", reward_reference_number, _check_reference_number, states_final_answer,
             "GSM8K: the final number equals the one after '####' in the reference solution")
)
register_verifier(
    Verifier("word_problems", reward_reference_number, _check_reference_number, states_final_answer,
             "generated word problems: the final number equals metadata 'answer'")
)
register_verifier(
    Verifier("letter_count", reward_letter_count, _check_letter_count, None,
             "letter counting: the stated (or tool-printed) count of a letter in a word")
)


def check_prompt_set(verifier: Verifier, prompts: Sequence[Metadata], shown: int = 3) -> None:
    """Raise MissingAnswerError (before launch) naming the prompts that lack what `verifier` needs."""
    problems = []
    for index, metadata in enumerate(prompts):
        try:
            verifier.check(metadata)
        except MissingAnswerError as error:
            label = f"prompt {index}" + (f" (id {metadata['id']})" if "id" in metadata else "")
            problems.append(f"{label}: {error}")
    if problems:
        raise MissingAnswerError(
            f"{len(problems)} of {len(prompts)} prompts lack what verifier {verifier.name!r} needs; "
            + "; ".join(problems[:shown]) + ("; ..." if len(problems) > shown else "")
        )


@dataclass(frozen=True)
class RewardConfig:
    """How a verdict becomes a reward: `format_weight` x the format check is added to the verifier's reward;
    a completion that hit the token budget or never closed its turn gets `unfinished` instead."""

    format_weight: float = 0.0
    unfinished: float = 0.0

    def __post_init__(self) -> None:
        for name in ("format_weight", "unfinished"):
            if not isinstance(getattr(self, name), int | float):
                raise ValueError(f"RewardConfig.{name} must be a number, got {getattr(self, name)!r}")


def score(verifier: Verifier, metadata: Metadata, completion: str, finished: bool, config: RewardConfig) -> float:
    """The reward of one completion; `finished` is False when it exceeded the budget or never closed its turn."""
    if not finished:
        return float(config.unfinished)
    reward = float(verifier.reward(metadata, completion))
    if verifier.format is not None and config.format_weight:
        reward += config.format_weight * float(verifier.format(completion))
    return reward


class SafeScorer:
    """`score` that never raises: a verifier error gives that sample a zero reward, is counted by kind
    (exception class) in `errors`, and is logged the first time each kind occurs."""

    def __init__(self, verifier: Verifier, config: RewardConfig | None = None) -> None:
        self.verifier = verifier
        self.config = config or RewardConfig()
        self.errors: Counter[str] = Counter()

    def __call__(self, metadata: Metadata, completion: str, finished: bool = True) -> float:
        try:
            return score(self.verifier, metadata, completion, finished, self.config)
        except Exception as error:  # a user's verifier may raise anything; the run goes on
            kind = type(error).__name__
            if not self.errors[kind]:
                log.warning("verifier %r raised %s (%s); such samples get reward 0, logged once per kind",
                            self.verifier.name, kind, error)
            self.errors[kind] += 1
            return 0.0
