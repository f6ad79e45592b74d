"""Identity and word-problem generators: deterministic by seed, varied, answers that check out."""

from __future__ import annotations

import re

import pytest

from fineforge.model.chat import Conversation
from fineforge.tasks.conversations.identity import LANGUAGES, OTHER_MODELS, PHRASES, identity_conversations
from fineforge.tasks.conversations.word_problems import word_problem_conversations


def as_json(records) -> list[dict]:
    return [r.to_json() for r in records]


def languages_of(text: str) -> set[str]:
    """The languages whose phrasings (filled in, any case, final punctuation optional) include `text`."""
    def plain(t: str) -> str:
        return t.lower().rstrip("?!. ")

    found = set()
    for language, kinds in PHRASES.items():
        for phrasings in kinds.values():
            filled = {p.format(name="Forge", maker="Acme Labs", other=o) for p in phrasings for o in OTHER_MODELS}
            if plain(text) in {plain(p) for p in filled}:
                found.add(language)
    return found


def test_identity_is_deterministic_varied_and_multilingual():
    records = list(identity_conversations(300, "Forge", "Acme Labs", seed=7))
    assert as_json(records) == as_json(identity_conversations(300, "Forge", "Acme Labs", seed=7))
    assert as_json(records) != as_json(identity_conversations(300, "Forge", "Acme Labs", seed=8))
    assert len({m["content"] for r in records for m in r.messages if m["role"] == "user"}) > 60
    languages = set()
    for record in records:
        Conversation.from_messages(record.messages)
        answers = [m["content"] for m in record.messages if m["role"] == "assistant"]
        assert all("Forge" in a or a in greeting_answers() for a in answers), answers  # every answer names it
        (language,) = set.intersection(*(languages_of(m["content"]) for m in record.messages))
        languages.add(language)
    assert languages == set(LANGUAGES) and len(languages) >= 3


def greeting_answers() -> set[str]:
    return {p for kinds in PHRASES.values() for p in kinds["greeting_answer"]}


def test_identity_languages_can_be_chosen():
    records = list(identity_conversations(50, "Forge", "Acme Labs", languages=["de"], seed=1))
    assert all("de" in languages_of(m["content"]) for r in records for m in r.messages)
    with pytest.raises(ValueError, match="unknown"):
        list(identity_conversations(1, "a", "b", languages=["xx"]))


NUMBERS = re.compile(r"\d+")


def check_answer(question: str) -> int:
    """Solve a generated problem from its text alone: (total - known costs) / quantity of the first item."""
    bought, _, rest = question.partition(". ")
    quantities = [int(q) for q in NUMBERS.findall(bought)]
    prices = [int(p) for p in re.findall(r"costs \$(\d+)", rest)]
    total = int(re.search(r"is \$(\d+)\.", rest).group(1))
    known = sum(q * p for q, p in zip(quantities[1:], prices, strict=True))
    assert (total - known) % quantities[0] == 0
    return (total - known) // quantities[0]


def test_word_problems_are_graded_deterministic_and_correct():
    records = list(word_problem_conversations(60, max_difficulty=4, seed=3))
    assert as_json(records) == as_json(word_problem_conversations(60, max_difficulty=4, seed=3))
    steps_by_difficulty: dict[int, set[int]] = {}
    for i, record in enumerate(records):
        Conversation.from_messages(record.messages)
        difficulty = 1 + i % 4
        question, solution = (m["content"] for m in record.messages)
        assert record.id.endswith(f"-d{difficulty}") and record.source == "word_problems"
        assert question.count(" costs $") == difficulty
        assert record.answer == str(check_answer(question))
        lines = solution.splitlines()
        assert lines[-1] == f"The answer is ${record.answer}." and "The answer" not in " ".join(lines[:-1])
        steps_by_difficulty.setdefault(difficulty, set()).add(len(lines))
    assert [min(steps_by_difficulty[d]) for d in range(1, 5)] == [4, 6, 7, 8]


def test_word_problem_control_states_the_answer_first():
    thinking = list(word_problem_conversations(10, seed=5))
    control = list(word_problem_conversations(10, answer_first=True, seed=5, source="control"))
    for a, b in zip(thinking, control, strict=True):
        assert a.messages[0] == b.messages[0] and a.answer == b.answer
        steps, first = a.messages[1]["content"].splitlines(), b.messages[1]["content"].splitlines()
        assert first == [steps[-1], *steps[:-1]]
    with pytest.raises(ValueError, match="max_difficulty"):
        list(word_problem_conversations(1, max_difficulty=9))


def test_seed_style_problem_reads_like_the_seed():
    record = next(word_problem_conversations(1, max_difficulty=1, seed=0))
    question, solution = (m["content"] for m in record.messages)
    assert re.fullmatch(r"\w+ [\w ]+ \d+ \w+ and \d+ \w+\. Each \w+ costs \$\d+\. The total cost of all the [\w ]+ is "
                        r"\$\d+\. How much does one \w+ cost\?", question), question
    assert re.search(r"cost \$\d+ - \$\d+ = \$\d+\.", solution), solution
