"""Verifiers on real GSM8K lines, generated word problems and letter counting; the registry and the safe scorer."""

from __future__ import annotations

import json
import logging
from fractions import Fraction

import pytest

from fineforge.model.tokenizer import CODE_END, CODE_START, OUTPUT_END, OUTPUT_START
from fineforge.model.verifiers import (
    VERIFIERS,
    MissingAnswerError,
    RewardConfig,
    SafeScorer,
    Verifier,
    check_prompt_set,
    final_answer,
    get_verifier,
    parse_number,
    register_verifier,
    require_fields,
    score,
)


@pytest.fixture(scope="module")
def gsm8k_test(shared_data) -> list[dict]:
    with open(shared_data / "gsm8k" / "test.jsonl", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def as_sft_solution(gsm8k_answer: str, final: str) -> str:
    """A GSM8K solution rewritten the way the SFT data ends it: steps, then "The answer is <final>."."""
    steps = gsm8k_answer.rsplit("####", 1)[0].strip()
    return f"{steps}\nThe answer is {final}."


def test_every_real_gsm8k_reference_solution_scores_one(gsm8k_test):
    gsm8k = get_verifier("gsm8k")
    assert len(gsm8k_test) == 1319
    assert all(gsm8k.reward(line, line["answer"]) == 1.0 for line in gsm8k_test)
    check_prompt_set(gsm8k, gsm8k_test)  # every test line carries a usable reference


def test_gsm8k_final_number_right_and_wrong(gsm8k_test):
    janet = gsm8k_test[0]  # Janet's ducks: "#### 18"
    assert janet["question"].startswith("Janet")
    gsm8k = get_verifier("gsm8k")
    assert gsm8k.reward(janet, as_sft_solution(janet["answer"], "$18")) == 1.0
    assert gsm8k.reward(janet, as_sft_solution(janet["answer"], "19")) == 0.0
    # the answer is the number after the LAST marker, not the last number of the text
    assert gsm8k.reward(janet, "The answer is 20. No wait: the answer is 18, since 9 * 2 = 18 dollars") == 1.0
    assert gsm8k.reward(janet, "She makes 9 * 2 = 18 dollars.") == 0.0  # no final answer stated


@pytest.mark.parametrize("written", ["70000", "70,000", "$70,000", "70000.0", "$70,000.00", "**70000**", ": 70000"])
def test_gsm8k_number_normalisation_on_a_real_line(gsm8k_test, written):
    flip = gsm8k_test[2]  # Josh flips a house: "#### 70000"
    assert flip["answer"].endswith("#### 70000")
    assert get_verifier("gsm8k").reward(flip, f"So he made a profit. The answer is {written}") == 1.0
    assert get_verifier("gsm8k").reward(flip, f"The answer is {written.replace('7', '8')}") == 0.0


def test_references_with_thousands_commas_in_the_real_train_set(shared_data):
    gsm8k = get_verifier("gsm8k")
    with open(shared_data / "gsm8k" / "train.jsonl", encoding="utf-8") as f:
        comma_lines = [line for line in map(json.loads, f) if "," in line["answer"].rsplit("####", 1)[1]]
    assert len(comma_lines) > 10
    for line in comma_lines:
        plain = line["answer"].rsplit("####", 1)[1].strip().replace(",", "")
        assert gsm8k.reward(line, f"The answer is {plain}") == 1.0, line["answer"][-40:]


def test_parse_number():
    assert parse_number("$1,200.00") == 1200
    assert parse_number("-$5") == -5
    assert parse_number("1/2") == Fraction(1, 2) == parse_number("0.5")
    assert parse_number("twelve") is None
    assert parse_number("1/0") is None
    assert final_answer("#### -3") == -3


def test_format_reward_and_unfinished_completions(gsm8k_test):
    janet, gsm8k = gsm8k_test[0], get_verifier("gsm8k")
    right, wrong = as_sft_solution(janet["answer"], "18"), as_sft_solution(janet["answer"], "17")
    unformatted = "9 * 2 = 18"
    config = RewardConfig(format_weight=0.1, unfinished=-0.5)
    assert score(gsm8k, janet, right, True, config) == pytest.approx(1.1)
    assert score(gsm8k, janet, wrong, True, config) == pytest.approx(0.1)
    assert score(gsm8k, janet, unformatted, True, config) == 0.0
    # ran out of budget or never closed its turn: the defined reward, whatever the text says
    assert score(gsm8k, janet, right, False, config) == -0.5
    assert score(gsm8k, janet, right, True, RewardConfig()) == 1.0
    with pytest.raises(ValueError, match="format_weight"):
        RewardConfig(format_weight="high")


def test_generated_word_problem():
    problem = {
        "id": "wp-1",
        "source": "word_problems",
        "messages": [{"role": "user", "content": "Emily buys 3 apples and 2 oranges. Each orange costs $2. "
                      "The total cost of all the fruit is $13. What is the cost of apples?"}],
        "answer": "9",
    }
    solution = "The oranges cost 2 * $2 = $4. The apples cost $13 - $4 = $9. The answer is $9."
    verifier = get_verifier("word_problems")
    check_prompt_set(verifier, [problem])
    assert verifier.reward(problem, solution) == 1.0
    assert verifier.reward(problem, solution.replace("is $9", "is $4")) == 0.0
    assert verifier.reward({**problem, "answer": 9}, solution) == 1.0


def test_letter_count_from_the_question_text_or_fields():
    verifier = get_verifier("letter_count")
    question = {"question": "How many 'r' are in 'strawberry'?"}
    assert verifier.reward(question, "s-t-r-a-w-b-e-r-r-y has r at 3, 8, 9. The answer is 3") == 1.0
    assert verifier.reward(question, "The answer is 2") == 0.0
    assert verifier.reward({"messages": [{"role": "user", "content": "How many r's are in strawberry?"}]},
                           "The answer is 3") == 1.0
    assert verifier.reward({"question": 'How many times does the letter "E" appear in "Bookkeeper"?'},
                           "The answer is 3") == 1.0  # case-insensitive
    assert verifier.reward({"letter": "s", "word": "mississippi"}, "The answer is 4") == 1.0


def test_letter_count_from_a_tool_output():
    verifier = get_verifier("letter_count")
    question = {"question": "How many 'r' are in 'strawberry'?"}
    tool_call = f"{CODE_START}print('strawberry'.count('r')){CODE_END}{OUTPUT_START}3\n{OUTPUT_END}"
    assert verifier.reward(question, tool_call) == 1.0
    assert verifier.reward(question, tool_call + " So there are 3. The answer is 3") == 1.0
    # a stated final answer wins over the tool output
    assert verifier.reward(question, tool_call + " The answer is 2") == 0.0
    assert verifier.reward(question, tool_call.replace("3\n", "2\n")) == 0.0


def test_prompt_set_without_answers_fails_before_launch(gsm8k_test):
    prompts = [gsm8k_test[0], {"id": "q-7", "question": "How far is the moon?"}, gsm8k_test[1]]
    with pytest.raises(MissingAnswerError, match=r"1 of 3 prompts .*'gsm8k'.*prompt 1 \(id q-7\): no 'answer'"):
        check_prompt_set(get_verifier("gsm8k"), prompts)
    with pytest.raises(MissingAnswerError, match="not a 'How many"):
        check_prompt_set(get_verifier("letter_count"), [{"question": "How many apples are there?"}])
    with pytest.raises(MissingAnswerError, match="not a number"):
        check_prompt_set(get_verifier("gsm8k"), [{"answer": "#### about ten"}])


def test_registry_and_a_user_verifier(gsm8k_test):
    with pytest.raises(ValueError, match="unknown verifier 'nope'.*gsm8k"):
        get_verifier("nope")
    with pytest.raises(ValueError, match="already registered"):
        register_verifier(Verifier("gsm8k", lambda m, c: 0.0, require_fields("answer")))

    def mentions_keyword(metadata, completion):
        return float(metadata["keyword"] in completion)

    try:
        ends_sentence = lambda completion: completion.endswith(".")  # noqa: E731
        user = register_verifier(Verifier("keyword", mentions_keyword, require_fields("keyword"), ends_sentence))
        assert get_verifier("keyword") is user
        assert score(user, {"keyword": "duck"}, "A duck.", True, RewardConfig(format_weight=0.5)) == 1.5
        with pytest.raises(MissingAnswerError, match=r"missing field\(s\) \['keyword'\]"):
            check_prompt_set(user, [{"question": "?"}])
    finally:
        VERIFIERS.pop("keyword", None)


def test_safe_scorer_counts_errors_and_logs_once_per_kind(caplog, gsm8k_test):
    def fragile(metadata, completion):
        if not completion:
            raise ValueError("empty completion")
        return float(1 / len(metadata["weights"]))  # KeyError or ZeroDivisionError on bad metadata

    scorer = SafeScorer(Verifier("fragile", fragile, require_fields()))
    with caplog.at_level(logging.WARNING, logger="fineforge.model.verifiers"):
        rewards = [scorer({"weights": [1, 1]}, "ok"), scorer({}, "x"), scorer({}, "y"), scorer({"weights": []}, "z"),
                   scorer({"weights": [1]}, ""), scorer({}, "w")]
    assert rewards == [0.5, 0.0, 0.0, 0.0, 0.0, 0.0]
    assert scorer.errors == {"KeyError": 3, "ZeroDivisionError": 1, "ValueError": 1}
    logged = [r.getMessage() for r in caplog.records]
    assert len(logged) == 3 and all("'fragile' raised" in m for m in logged)
    # a working verifier through the same wrapper
    safe_gsm8k = SafeScorer(get_verifier("gsm8k"))
    assert safe_gsm8k(gsm8k_test[0], gsm8k_test[0]["answer"]) == 1.0 and not safe_gsm8k.errors
