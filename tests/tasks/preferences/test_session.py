"""A ranking session: answers validated with reasons, each judgement stored before the next prompt, skip, stop,
and a new session resuming at the first unranked prompt with the same completions."""

from __future__ import annotations

import json

import pytest

from fineforge.tasks.preferences.config import RankingConfig
from fineforge.tasks.preferences.prompts import RankingPrompt
from fineforge.tasks.preferences.rankings import InvalidJudgement, RankingsDataset
from fineforge.tasks.preferences.sampling import SampledPrompt, SampleStore
from fineforge.tasks.preferences.session import (
    RANK,
    SKIP,
    STOP,
    Answer,
    EmptyPromptsFile,
    Question,
    judgement_of,
    run_session,
)
from testkit.checkpoints import tiny_bytes_checkpoint

pytestmark = pytest.mark.usefixtures("torch_one_thread")

PROMPTS = [{"id": f"p-{n}", "prompt": text} for n, text in
           enumerate(["Name a prime number.", "Say hello.", "Count to three.", "Spell cat."], 1)]


def sampled_three() -> SampledPrompt:
    return SampledPrompt.from_texts(RankingPrompt("p-1", [{"role": "user", "content": "Name a prime."}]),
                                    ["7", "9", "Primes are numbers."], {})


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return tiny_bytes_checkpoint(tmp_path_factory.mktemp("run"))


def session_config(run_dir, tmp_path, **overrides) -> RankingConfig:
    prompts = tmp_path / "prompts.jsonl"
    if not prompts.exists():
        prompts.write_text("".join(json.dumps(p) + "\n" for p in PROMPTS))
    values = {"checkpoint": str(run_dir), "prompts": str(prompts), "dataset": str(tmp_path / "rankings.jsonl"),
              "num_completions": 3, "judge": "alice", "sampling": {"max_new_tokens": 12, "seed": 3}}
    return RankingConfig.model_validate(values | overrides)


@pytest.mark.parametrize(
    ("mode", "picks", "reason"),
    [
        ("order", "1,1,3", "completion 1 is given more than one place"),
        ("order", "3, 1", "rank every completion, best first; not ranked: 2"),
        ("order", "4,1,2,3", "there is no completion 4: the completions are numbered 1 to 3"),
        ("order", "2,first,3", "'first' is not a completion number"),
        ("order", "0 1 2", "there is no completion 0"),
        ("best_worst", "2", "give the best and the worst completion"),
        ("best_worst", "2,2", "completion 2 is given more than one place"),
        ("best_worst", (None, 2), "choose both the best and the worst completion"),
        ("best_worst", (1, 5), "there is no completion 5"),
    ],
)
def test_bad_answers_are_rejected_with_the_reason(mode, picks, reason):
    with pytest.raises(InvalidJudgement, match=reason):
        judgement_of(Answer(RANK, "alice", picks), sampled_three(), mode)


def test_an_answer_without_a_judge_is_rejected():
    with pytest.raises(InvalidJudgement, match="enter your name"):
        judgement_of(Answer(RANK, "  ", "1,2,3"), sampled_three(), "order")


def test_orders_and_best_worst_picks_become_judgements():
    sampled = sampled_three()
    ids = [c.id for c in sampled.completions]
    ordered = judgement_of(Answer(RANK, " alice ", "2 > 3 > 1"), sampled, "order")
    assert ordered.order == (ids[1], ids[2], ids[0]) and ordered.judge == "alice"
    assert ordered.ranks == [2, 0, 1] and ordered.prompt_id == "p-1"
    best_worst = judgement_of(Answer(RANK, "bob", (3, 2)), sampled, "best_worst")
    assert [c.id for c in best_worst.completions] == [ids[2], ids[1]] and best_worst.order == (ids[2], ids[1])
    assert judgement_of(Answer(RANK, "bob", "3 2"), sampled, "best_worst").order == best_worst.order


class Person:
    """Answers the questions of a session from a script, and records what it was shown and what was on disk."""

    def __init__(self, dataset_path, answers):
        self.dataset_path, self.answers = dataset_path, list(answers)
        self.questions: list[Question] = []
        self.stored_when_asked: list[set[str]] = []

    def __call__(self, question: Question) -> Answer:
        self.questions.append(question)
        self.stored_when_asked.append(RankingsDataset(self.dataset_path).ranked_prompt_ids())
        return self.answers.pop(0)


def test_a_session_stores_each_judgement_at_once_and_a_new_one_resumes(run_dir, tmp_path):
    config = session_config(run_dir, tmp_path)
    person = Person(config.dataset, [
        Answer(RANK, "bob", "3,2,1"),
        Answer(RANK, "bob", "1,1,2"),   # rejected: the same prompt comes back with the reason
        Answer(SKIP),
        Answer(RANK, "bob", "1,3,2"),
        Answer(STOP),
    ])
    summary = run_session(config, person)

    assert [(q.sampled.prompt_id, q.position, q.total, q.error) for q in person.questions] == [
        ("p-1", 1, 4, None), ("p-2", 2, 4, None),
        ("p-2", 2, 4, "completion 1 is given more than one place"), ("p-3", 3, 4, None), ("p-4", 4, 4, None)]
    assert [q.judge for q in person.questions] == ["alice", "bob", "bob", "bob", "bob"]  # the last name given
    # each judgement was on disk before the next question was asked
    assert person.stored_when_asked == [set(), {"p-1"}, {"p-1"}, {"p-1"}, {"p-1", "p-3"}]
    stored = {j.prompt_id: j for j in RankingsDataset(config.dataset)}
    first = person.questions[0].sampled
    assert stored["p-1"].order == tuple(first.completions[n].id for n in (2, 1, 0))
    assert stored["p-1"].judge == "bob" and stored["p-1"].completions == first.completions
    assert summary.counts() == {
        "dataset": config.dataset, "prompts": 4, "malformed_prompt_lines": 0, "already_ranked": 0, "offered": 4,
        "ranked": 2, "skipped": 1, "unrankable": 0, "rejected_answers": 1, "stopped": True, "remaining": 2,
        "judgements_in_dataset": 2}

    # a new session: the skipped p-2 is the first unranked prompt, shown with the completions stored before
    again = Person(config.dataset, [Answer(RANK, "carol", "1,2,3"), Answer(RANK, "carol", "2,1,3")])
    summary = run_session(config, again)
    assert [q.sampled for q in again.questions] == [person.questions[1].sampled, person.questions[4].sampled]
    assert summary.already_ranked == 2 and summary.remaining == 0 and summary.judgements_in_dataset == 4
    assert len(SampleStore(config.samples_path)) == 4
    assert run_session(config, Person(config.dataset, [])).offered == 0


def test_max_prompts_and_stored_completions_need_no_model(run_dir, tmp_path):
    config = session_config(run_dir, tmp_path, max_prompts=2, mode="best_worst")
    person = Person(config.dataset, [Answer(RANK, "dan", (1, 2)), Answer(RANK, "dan", "3 1")])
    assert run_session(config, person).counts()["ranked"] == 2
    assert {len(j.completions) for j in RankingsDataset(config.dataset)} == {2}

    # the stored completions are shown again without sampling: a sampler that fails is never called
    def no_sampling(prompt):
        raise AssertionError(f"{prompt.id} was sampled again")

    samples = SampleStore(config.samples_path)
    for entry in PROMPTS[2:]:
        prompt = RankingPrompt(entry["id"], [{"role": "user", "content": entry["prompt"]}])
        samples.add(SampledPrompt.from_texts(prompt, ["yes", "no"], {}))
    again = Person(config.dataset, [Answer(RANK, "dan", "2,1"), Answer(RANK, "dan", "1,2")])
    assert run_session(config, again, no_sampling).remaining == 0


def test_a_prompt_with_one_distinct_completion_is_passed_over(run_dir, tmp_path):
    config = session_config(run_dir, tmp_path, sampling={"max_new_tokens": 1, "top_k": 1})
    summary = run_session(config, Person(config.dataset, []))
    assert summary.unrankable == ["p-1", "p-2", "p-3", "p-4"] and summary.remaining == 4


def test_an_empty_prompts_file_is_an_error(run_dir, tmp_path):
    (tmp_path / "prompts.jsonl").write_text("{bad\n")
    with pytest.raises(EmptyPromptsFile, match="no usable prompts"):
        run_session(session_config(run_dir, tmp_path), Person(tmp_path / "rankings.jsonl", []))
