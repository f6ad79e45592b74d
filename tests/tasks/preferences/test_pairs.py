"""Rankings -> preference set, on the real hh-rlhf and OpenAssistant rankings: counts, split, rows, rebuilds."""

from __future__ import annotations

import pytest

from fineforge.model.chat import ChatTemplate, Conversation
from fineforge.model.preference_data import PreferenceDataError, load_preference_manifest, read_split
from fineforge.model.reward_model import expand_pairs
from fineforge.model.tokenizer import load_tokenizer
from fineforge.tasks.preferences.importers import import_hh_rlhf, import_oasst
from fineforge.tasks.preferences.pairs import PairsConfig, build_preference_set, heldout
from fineforge.tasks.preferences.rankings import RankingsDataset

MAX_LENGTH = 1024
TOKENIZER = load_tokenizer("bytes")


@pytest.fixture(scope="module")
def rankings(shared_data, tmp_path_factory):
    """The real hh-rlhf (2,307 two-way) and OpenAssistant (212 K-way) rankings, and one line cut short by a crash."""
    path = tmp_path_factory.mktemp("rankings") / "rankings.jsonl"
    dataset = RankingsDataset(path)
    dataset.append_judgements(import_hh_rlhf(shared_data / "preference" / "hh-rlhf-harmless-base-test.jsonl.gz")
                              .judgements)
    dataset.append_judgements(import_oasst(shared_data / "sft" / "oasst-en-100-trees.jsonl").judgements)
    with open(path, "a") as f:
        f.write('{"prompt_id": "cut-short", "prompt": [{"role": "us\n')
    return path


def config(rankings, output, **overrides) -> PairsConfig:
    return PairsConfig(**{"rankings": str(rankings), "output": str(output), "tokenizer": "bytes",
                          "max_length": MAX_LENGTH, **overrides})


def test_real_rankings_become_a_preference_set(rankings, tmp_path):
    manifest = build_preference_set(config(rankings, tmp_path / "set"), TOKENIZER)
    stats, counts = manifest["stats"], manifest["counts"]
    assert stats["rankings_in"] == 2307 + 212 and stats["malformed_lines"] == 1
    assert stats["completions_over_long"] > 0 and stats["rankings_too_long"] > 0  # long transcripts, 1,024 bytes
    kept = counts["train"]["rankings"] + counts["heldout"]["rankings"]
    assert kept + stats["rankings_too_long"] == stats["rankings_in"]
    assert 0.07 < counts["heldout"]["rankings"] / kept < 0.13  # heldout_fraction 0.1
    assert manifest["longest_row"] <= MAX_LENGTH

    train, held = (read_split(tmp_path / "set", manifest, split) for split in ("train", "heldout"))
    assert {r.prompt_id for r in train}.isdisjoint({r.prompt_id for r in held})
    assert all(heldout(r.prompt_id, 0.1) for r in held) and not any(heldout(r.prompt_id, 0.1) for r in train)
    assert counts["train"]["pairs"] == sum(len(expand_pairs(r.ranks)) for r in train)
    assert max(len(r.completions) for r in train + held) > 2  # OpenAssistant's K-way rankings kept as such

    # each row is the chat rendering of the prompt and one reply, ending at the reply's <|im_end|>
    judgements = {j.prompt_id: j for j in RankingsDataset(rankings)}
    template = ChatTemplate(TOKENIZER)
    for ranking in (train[0], held[0], max(train, key=lambda r: len(r.completions))):
        judgement = judgements[ranking.prompt_id]
        texts = {c.id: c.text for c in judgement.completions}
        for completion_id, row, rank in zip(ranking.completion_ids, ranking.rows(), ranking.ranks, strict=True):
            messages = [*judgement.prompt, {"role": "assistant", "content": texts[completion_id]}]
            assert row == template.render(Conversation.from_messages(messages))[0]
            assert rank == judgement.order.index(completion_id)


def test_rebuilds_are_skipped_or_refused_and_the_split_is_stable(rankings, tmp_path):
    first = build_preference_set(config(rankings, tmp_path / "a"), TOKENIZER)
    assert build_preference_set(config(rankings, tmp_path / "a"), TOKENIZER)["skipped"]
    with pytest.raises(PreferenceDataError, match="holds a preference set of other rankings or settings"):
        build_preference_set(config(rankings, tmp_path / "a", max_length=512), TOKENIZER)
    (tmp_path / "other").mkdir()
    with pytest.raises(PreferenceDataError, match="exists and is not a preference set"):
        build_preference_set(config(rankings, tmp_path / "other"), TOKENIZER)
    again = build_preference_set(config(rankings, tmp_path / "b"), TOKENIZER)
    assert again["files"] == first["files"]  # same bytes: the split depends on the prompt ids only
    assert load_preference_manifest(tmp_path / "b")["counts"] == first["counts"]
    assert not list(tmp_path.glob(".*.tmp"))  # written into a temporary folder, renamed when complete


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match="rankings file not found"):
        PairsConfig(rankings="/nowhere.jsonl", output="x", tokenizer="bytes", max_length=64)
    with pytest.raises(ValueError, match="heldout_fraction"):
        PairsConfig(rankings=__file__, output="x", tokenizer="bytes", max_length=64, heldout_fraction=1.0)
    with pytest.raises(ValueError, match="max_length"):
        PairsConfig(rankings=__file__, output="x", tokenizer="bytes", max_length=2)
