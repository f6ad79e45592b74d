"""The rankings dataset: validation with reasons, idempotent appends, durability across a killed writer, resume."""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
import textwrap

import pytest

from fineforge.tasks.preferences.rankings import (
    InvalidJudgement,
    Judgement,
    RankingsDataset,
    first_unranked,
    order_from_ranks,
)

PROMPT = [{"role": "user", "content": "Name a prime number."}]
COMPLETIONS = [("a", "7"), ("b", "9"), ("c", "Primes are numbers.")]


def judgement(prompt_id: str = "p-1", order=("a", "c", "b"), judge: str = "alice", **overrides) -> Judgement:
    fields = dict(prompt_id=prompt_id, prompt=PROMPT, completions=COMPLETIONS, order=order, judge=judge) | overrides
    return Judgement.create(**fields)


def test_a_judgement_round_trips_through_the_file(tmp_path):
    path = tmp_path / "rankings.jsonl"
    stored = judgement(time="2025-06-01T10:00:00+00:00")
    assert RankingsDataset(path).append_judgement(stored)
    record = json.loads(path.read_text())
    assert record == {
        "prompt_id": "p-1", "prompt": PROMPT, "completions": [{"id": i, "text": t} for i, t in COMPLETIONS],
        "order": ["a", "c", "b"], "judge": "alice", "time": "2025-06-01T10:00:00+00:00",
    }
    assert list(RankingsDataset(path)) == [stored]
    assert stored.ranks == [0, 2, 1]
    assert judgement().time.endswith("+00:00")  # stamped now, in UTC


def test_appending_the_same_judgement_twice_keeps_one(tmp_path):
    path = tmp_path / "rankings.jsonl"
    dataset = RankingsDataset(path)
    assert dataset.append_judgement(judgement()) is True
    # resubmitted later (another time stamp), completions listed in another order: the same judgement
    again = judgement(completions=list(reversed(COMPLETIONS)), time="2030-01-01T00:00:00+00:00")
    assert dataset.append_judgement(again) is False
    assert RankingsDataset(path).append_judgements([judgement(), again]) == 0
    assert len(path.read_text().splitlines()) == 1
    assert len(RankingsDataset(path)) == 1


def test_a_different_order_is_a_correction_the_newest_wins(tmp_path):
    path = tmp_path / "rankings.jsonl"
    dataset = RankingsDataset(path)
    dataset.append_judgement(judgement(order=("a", "c", "b")))
    assert dataset.append_judgement(judgement(order=("a", "b", "c"), judge="bob"))
    reloaded = list(RankingsDataset(path))
    assert len(reloaded) == 1 and reloaded[0].order == ("a", "b", "c") and reloaded[0].judge == "bob"
    # the same prompt with other completions is another judgement
    other = judgement(completions=[("a", "7"), ("d", "11")], order=("d", "a"))
    assert dataset.append_judgement(other) and len(RankingsDataset(path)) == 2


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"order": ("a", "x", "b")}, "order names unknown completion 'x'"),
        ({"order": ("a", "b", "a")}, "completion 'a' is ranked twice"),
        ({"order": ("a", "b")}, r"order must rank every completion; unranked: \['c'\]"),
        ({"completions": [("a", "7")], "order": ("a",)}, "at least 2 completions"),
        ({"completions": [("a", "7"), ("a", "9")], "order": ("a",)}, "distinct"),
        ({"prompt": [{"role": "robot", "content": "hi"}]}, "role among"),
        ({"prompt": []}, "non-empty list of messages"),
        ({"prompt_id": ""}, "prompt_id"),
        ({"judge": ""}, "judge"),
    ],
)
def test_invalid_judgements_are_rejected_with_the_reason(overrides, reason):
    with pytest.raises(InvalidJudgement, match=reason):
        judgement(**overrides)


def test_ranks_from_a_form():
    assert order_from_ranks({"b": 2, "a": 0, "c": 1}) == ["a", "c", "b"]
    with pytest.raises(InvalidJudgement, match="rank 1 is given to both 'a' and 'b'"):
        order_from_ranks({"a": 1, "b": 1, "c": 0})
    with pytest.raises(InvalidJudgement, match="whole number"):
        order_from_ranks({"a": "first"})


def test_malformed_lines_are_counted_skipped_and_logged_with_line_numbers(tmp_path, caplog):
    path = tmp_path / "rankings.jsonl"
    good = judgement().to_json()
    unknown = json.loads(good) | {"order": ["a", "b", "zzz"]}
    lines = [good, "{not json", "[1, 2]", json.dumps(unknown), "", judgement("p-2").to_json()]
    path.write_text("\n".join(lines) + "\n")
    with caplog.at_level(logging.WARNING):
        dataset = RankingsDataset(path)
    assert len(dataset) == 2
    assert [(bad.line, bad.reason.split(" (")[0]) for bad in dataset.malformed] == [
        (2, "not JSON"), (3, "a JSON list, not an object"), (4, "order names unknown completion 'zzz'"),
    ]
    assert [r.getMessage().split(" skipped")[0] for r in caplog.records] == [f"{path} line {n}" for n in (2, 3, 4)]


def test_a_line_cut_short_by_a_crash_is_skipped_and_does_not_swallow_the_next(tmp_path):
    path = tmp_path / "rankings.jsonl"
    line = judgement().to_json()
    path.write_text(line + "\n" + judgement("p-2").to_json()[:40])  # the writer died mid-line
    dataset = RankingsDataset(path)
    assert len(dataset) == 1 and [bad.line for bad in dataset.malformed] == [2]
    assert dataset.append_judgement(judgement("p-3"))
    reloaded = RankingsDataset(path)
    assert sorted(j.prompt_id for j in reloaded) == ["p-1", "p-3"]
    assert [bad.line for bad in reloaded.malformed] == [2]


def test_two_writers_on_one_file_store_a_judgement_once(tmp_path):
    path = tmp_path / "rankings.jsonl"
    first, second = RankingsDataset(path), RankingsDataset(path)
    assert first.append_judgement(judgement())
    assert not second.append_judgement(judgement())  # it reads what the first wrote before appending
    assert second.append_judgement(judgement("p-2"))
    assert first.append_judgement(judgement("p-3"))
    assert len(path.read_text().splitlines()) == 3
    assert len(first) == 3 and len(second) == 2
    second.refresh()
    assert len(second) == 3


WRITER = textwrap.dedent(
    """
    import sys, time
    from fineforge.tasks.preferences.rankings import Judgement, RankingsDataset
    dataset = RankingsDataset(sys.argv[1])
    for n in range(100_000):
        dataset.append_judgement(Judgement.create(f"p-{n}", [{"role": "user", "content": "hi"}],
                                                  [("a", "x"), ("b", "y")], ["b", "a"], "writer"))
        print(n, flush=True)
    """
)


def test_every_acknowledged_judgement_survives_a_killed_writer(tmp_path):
    path = tmp_path / "rankings.jsonl"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        acknowledged = [int(writer.stdout.readline()) for _ in range(30)]
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        writer.stdout.close()
    dataset = RankingsDataset(path)
    assert {f"p-{n}" for n in acknowledged} <= dataset.ranked_prompt_ids()
    assert not dataset.malformed or dataset.malformed[0].line == len(path.read_text().split("\n"))


def test_first_unranked_is_where_a_rerun_resumes(tmp_path):
    dataset = RankingsDataset(tmp_path / "rankings.jsonl")
    prompts = ["p-1", "p-2", "p-3"]
    assert first_unranked(prompts, dataset) == 0
    dataset.append_judgements([judgement("p-1"), judgement("p-3")])
    assert first_unranked(prompts, RankingsDataset(dataset.path)) == 1
    dataset.append_judgement(judgement("p-2"))
    assert first_unranked(prompts, dataset) is None
