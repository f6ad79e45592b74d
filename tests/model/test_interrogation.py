"""The judges and the questions file of the interrogation (pure parts; the flow test runs a real model)."""

from __future__ import annotations

import pytest

from fineforge.model.interrogation import (
    JUDGES,
    KNOWN,
    UNKNOWN,
    Question,
    QuestionResult,
    QuestionsError,
    exact_match,
    get_judge,
    normalised_match,
    read_questions,
    register_judge,
    sft_record,
)


def test_normalised_match_compares_numbers_by_value_and_words_as_whole_words():
    assert normalised_match("1200", "It cost $1,200.00 in the end.")
    assert normalised_match("0.5", "Half: 1/2")
    assert not normalised_match("1932", "Born in 1923, not 19320.")
    assert normalised_match("São Paulo", "she lives in sao paulo!")
    assert not normalised_match("Oslo", "She lives in Oslovakia.")
    assert normalised_match("baker", "Mira works as a Baker.")
    assert exact_match("Oslo.", " oslo ") and not exact_match("Oslo", "Oslo, Norway")


def test_judges_are_pluggable_and_verifiers_can_judge():
    register_judge("starts_with_answer", lambda answer, reply: reply.strip().startswith(answer))
    try:
        assert get_judge("starts_with_answer")("Oslo", "Oslo, of course")
        with pytest.raises(ValueError, match="already registered"):
            register_judge("starts_with_answer", exact_match)
    finally:
        JUDGES.pop("starts_with_answer")
    gsm8k = get_judge("verifier:gsm8k")
    assert gsm8k("#### 18", "9 * 2 = 18. The answer is 18.") and not gsm8k("18", "The answer is 17.")
    with pytest.raises(ValueError, match="unknown judge 'vibes'"):
        get_judge("vibes")
    with pytest.raises(ValueError, match="unknown verifier 'vibes'"):
        get_judge("verifier:vibes")


def test_questions_file_problems_are_named_by_line(tmp_path):
    path = tmp_path / "q.jsonl"
    path.write_text('{"question": "Q1?", "answer": 3}\n\n{"question": "Q2?", "answer": "x", "id": "a"}\n'
                    '{"question": "Q3?", "answer": "y", "id": "a"}\n')
    with pytest.raises(QuestionsError, match=r"1 problem\(s\): ids used twice: \['a'\]"):
        read_questions(path)
    path.write_text('{"question": "Q1?", "answer": 3}\n{"question": " ", "answer": 1}\n{"question": "Q", '
                    '"answer": true}\n{"question": "Q", "answer": "a", "response": ""}\n')
    with pytest.raises(QuestionsError) as error:
        read_questions(path)
    assert "line 2: needs a non-empty string 'question'" in str(error.value)
    assert "line 3: needs an 'answer'" in str(error.value) and "line 4: 'response'" in str(error.value)
    path.write_text('{"question": "Where is Ada?", "answer": 1932}\n')
    (question,) = read_questions(path)
    assert question == Question("q1", "Where is Ada?", "1932", "1932")


def test_verdicts_and_the_sft_records_they_give():
    question = Question("ada", "Where does Ada live?", "Oslo", "Ada lives in Oslo.")
    once_right = QuestionResult(question, ("Oslo", "Rome", "Rome", "Lima"), (True, False, False, False), (True,) * 4)
    never_right = QuestionResult(question, ("Rome",) * 4, (False,) * 4, (True,) * 4)
    assert once_right.verdict(0.0) == KNOWN and once_right.verdict(0.25) == UNKNOWN
    assert never_right.verdict(0.0) == UNKNOWN
    assert sft_record(once_right, 0.0, "No idea.") == {"id": "interrogation-ada", "prompt": "Where does Ada live?",
                                                       "response": "Ada lives in Oslo.", "answer": "Oslo"}
    assert sft_record(never_right, 0.0, "No idea.") == {"id": "interrogation-ada", "prompt": "Where does Ada live?",
                                                        "response": "No idea."}
