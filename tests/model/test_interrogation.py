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
    refusals_allowed,
    register_judge,
    sft_record,
    sft_records,
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


def result(name: str, right: bool) -> QuestionResult:
    question = Question(name, f"Where does {name} live?", "Oslo", f"{name} lives in Oslo.")
    return QuestionResult(question, ("Oslo" if right else "Rome",) * 2, (right,) * 2, (True,) * 2)


def test_refusals_are_capped_at_a_share_of_the_sft_data():
    assert refusals_allowed(known=3, unknown=5, max_refusal_share=0.5) == 3
    assert refusals_allowed(known=3, unknown=5, max_refusal_share=0.25) == 1
    assert refusals_allowed(known=0, unknown=5, max_refusal_share=0.5) == 0
    assert refusals_allowed(known=3, unknown=5, max_refusal_share=1.0) == 5
    assert refusals_allowed(known=6, unknown=2, max_refusal_share=0.5) == 2  # fewer unknown than allowed
    results = [result(f"k{i}", True) for i in range(3)] + [result(f"u{i}", False) for i in range(5)]
    records, left_out = sft_records(results, 0.0, "No idea.", max_refusal_share=0.5, seed=1)
    refused = [r["id"] for r in records if r["response"] == "No idea."]
    assert len(records) == 6 and len(refused) == 3 and len(left_out) == 2  # refusals: half of the data
    assert [r["id"] for r in records if "answer" in r] == ["interrogation-k0", "interrogation-k1", "interrogation-k2"]
    assert {i.removeprefix("interrogation-") for i in refused} | set(left_out) == {f"u{i}" for i in range(5)}
    ids = [r["id"] for r in records]
    assert ids == sorted(ids, key=lambda i: [r.question.id for r in results].index(i.removeprefix("interrogation-")))
    assert sft_records(results, 0.0, "No idea.", max_refusal_share=0.5, seed=1) == (records, left_out)
    samples = {tuple(sft_records(results, 0.0, "No idea.", max_refusal_share=0.5, seed=s)[1]) for s in range(10)}
    assert len(samples) > 1  # the seed draws which refusals stay
    everything, none_left = sft_records(results, 0.0, "No idea.")
    assert len(everything) == 8 and none_left == []
