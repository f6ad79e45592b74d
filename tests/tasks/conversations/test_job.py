"""The conversation stage end to end through the CLI on the real files: stats, drops by reason, mixture,
truncation, atomic output that is skipped when complete, `tokens inspect` with the mask, config errors."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from fineforge.flows.cli import app
from fineforge.model.chat import Conversation, render
from fineforge.model.conversation_shards import conversation_split
from fineforge.model.tokenizer import load_tokenizer

runner = CliRunner()

LONG_REPLY = "All right. " * 400
USER_LINES = [
    {"messages": [{"role": "human", "content": "Say hi."}, {"role": "gpt", "content": "Hi!"}], "id": "ok-1"},
    "{not json",
    {"messages": [{"role": "narrator", "content": "x"}, {"role": "gpt", "content": "y"}]},
    {"messages": [{"role": "human", "content": "anyone there?"}]},
    {"messages": [{"role": "human", "content": "2+2"}, {"role": "gpt", "content": "<CODE_START>print(2+2)"}]},
    {"prompt": "Tell me a story.", "response": LONG_REPLY, "id": "long-single"},
    {"messages": [{"role": "human", "content": "Hello"}, {"role": "gpt", "content": "Hello! How can I help?"},
                  {"role": "human", "content": "Talk for a long time."}, {"role": "gpt", "content": LONG_REPLY}],
     "id": "long-multi"},
]


def write_user_file(path) -> str:
    path.write_text("\n".join(line if isinstance(line, str) else json.dumps(line) for line in USER_LINES) + "\n")
    return str(path)


def config_values(shared_data, workdir, user_file, **overrides) -> dict:
    return {
        "workdir": str(workdir), "name": "sft", "tokenizer": "gpt2", "vocab_dir": str(shared_data / "tokenizers"),
        "context_length": 512, "val_fraction": 0.1, "seed": 1,
        "sources": [
            {"kind": "oasst", "path": str(shared_data / "sft" / "oasst-en-100-trees.jsonl")},
            {"kind": "gsm8k", "path": str(shared_data / "gsm8k" / "train.jsonl"), "limit": 100, "epochs": 2.5},
            {"kind": "identity", "assistant_name": "Forge", "maker": "Acme Labs", "count": 40, "weight": 0.5},
            {"kind": "word_problems", "count": 40},
            {"kind": "word_problems", "name": "answer_first", "count": 20, "answer_first": True},
            {"kind": "jsonl", "path": user_file, "roles": {"human": "user", "gpt": "assistant"},
             "system": "You are Forge."},
        ],
        **overrides,
    }


def run_build(tmp_path, values) -> tuple[int, str]:
    config = tmp_path / f"config-{values['name']}.json"
    config.write_text(json.dumps(values))
    result = runner.invoke(app, ["conversations", "build", "--config", str(config)])
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def built(shared_data, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("conversations")
    values = config_values(shared_data, tmp / "work", write_user_file(tmp / "mine.jsonl"))
    code, output = run_build(tmp, values)
    assert code == 0, output
    return tmp, values, output


def sources_by_name(stats: dict) -> dict:
    return {s["name"]: s for s in stats["sources"]}


def test_stats_count_every_conversation_and_every_drop(built):
    tmp, _, output = built
    out_dir = tmp / "work" / "conversations" / "sft"
    stats = json.loads((out_dir / "stats.json").read_text())
    sources = sources_by_name(stats)
    mine = sources["jsonl"]
    assert mine["dropped"] == {"malformed_json": 1, "unknown_role": 1, "no_assistant_turn": 1,
                               "bad_tool_markup": 1, "too_long": 1}
    assert mine["changed"] == {"truncated": 1} and mine["conversations_out"] == 2
    assert sources["gsm8k"]["conversations_in"] == 100 and not sources["gsm8k"]["dropped"]
    for source in stats["sources"]:
        assert source["conversations_in"] == source["conversations_out"] + sum(source["dropped"].values())
    assert stats["conversations_in"] == sum(s["conversations_in"] for s in stats["sources"])
    assert stats["dropped"]["too_long"] == sources["oasst"]["dropped"]["too_long"] + 1
    assert stats["max_conversation_tokens"] <= 512
    assert sum(s["loss_share"] for s in stats["sources"]) == pytest.approx(1.0, abs=1e-3)
    assert "dropped: malformed_json" in output and "dropped: unknown_role" in output


def test_shards_hold_the_rendered_records_with_epochs_and_weights(built, shared_data):
    tmp, _, _ = built
    out_dir = tmp / "work" / "conversations" / "sft"
    stats = json.loads((out_dir / "stats.json").read_text())
    sources = sources_by_name(stats)
    tok = load_tokenizer("gpt2", shared_data / "tokenizers")
    shards, manifest = conversation_split(out_dir, "train")
    index = [row for shard in shards for row in shard.index]
    assert manifest["sources"] == list(sources)
    names = manifest["sources"]
    gsm8k = sources["gsm8k"]
    unique = gsm8k["conversations_out"] - gsm8k["conversations_val"]
    assert gsm8k["conversations_train"] == 2 * unique + round(0.5 * unique)
    assert sum(1 for row in index if names[row["source"]] == "gsm8k") == gsm8k["conversations_train"]
    assert {float(row["weight"]) for row in index if names[row["source"]] == "identity"} == {0.5}
    assert stats["tokens_train"] == sum(int(row["length"]) for row in index)

    records = {}
    for split in ("train", "val"):
        for line in (out_dir / f"{split}.jsonl").read_text().splitlines():
            record = json.loads(line)
            records[(record["source"], record["id"])] = (split, record)
    truncated = records[("jsonl", "long-multi")][1]
    assert [m["role"] for m in truncated["messages"]] == ["system", "user", "assistant"]  # cut after a whole turn
    assert truncated["messages"][0]["content"] == "You are Forge."
    assert ("jsonl", "long-single") not in records
    assert records[("gsm8k", "gsm8k-train-1")][1]["answer"] == "72"
    val_shards, _ = conversation_split(out_dir, "val")
    val_records = [r for split, r in records.values() if split == "val"]
    val_rows = [(s, row) for s in val_shards for row in s.index]
    assert len(val_rows) == len(val_records) == stats["conversations_val"]
    for (shard, row), record in zip(val_rows, val_records, strict=True):
        ids, mask = render(Conversation.from_messages(record["messages"]), tok)
        start, end = int(row["start"]), int(row["start"] + row["length"])
        assert shard.tokens[start:end].tolist() == ids and shard.mask[start:end].tolist() == mask


def test_a_complete_build_is_skipped(built):
    tmp, values, _ = built
    stats_file = tmp / "work" / "conversations" / "sft" / "stats.json"
    before = stats_file.read_text()
    code, output = run_build(tmp, values)
    assert code == 0 and "skipped: already complete" in output
    assert stats_file.read_text() == before


def test_inspect_shows_the_mask_and_verifies_every_file(built, shared_data):
    tmp, _, _ = built
    out_dir = tmp / "work" / "conversations" / "sft"
    result = runner.invoke(app, ["tokens", "inspect", str(out_dir), "--vocab-dir", str(shared_data / "tokenizers"),
                                 "--sample-tokens", "40"])
    assert result.exit_code == 0, result.output
    assert "loss mask:" in result.output and "trainable" in result.output and "verified" in result.output
    index_file = out_dir / "val_000000.index.npy"
    original = index_file.read_bytes()
    try:
        index_file.write_bytes(original[:-4])
        broken = runner.invoke(app, ["tokens", "inspect", str(out_dir), "--no-verify", "--sample-tokens", "4"])
        assert broken.exit_code == 1 and "cannot read shards" in broken.output
    finally:
        index_file.write_bytes(original)


def test_drop_instead_of_truncate(shared_data, tmp_path):
    values = config_values(shared_data, tmp_path / "work", write_user_file(tmp_path / "mine.jsonl"), name="dropped",
                           too_long="drop")
    values["sources"] = values["sources"][-1:]
    code, output = run_build(tmp_path, values)
    assert code == 0, output
    stats = json.loads((tmp_path / "work" / "conversations" / "dropped" / "stats.json").read_text())
    assert stats["dropped"]["too_long"] == 2 and "truncated" not in stats["changed"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda v: v["sources"].append({"kind": "reddit", "path": "x"}), "sources.6: Input tag 'reddit'"),
        (lambda v: v["sources"][5]["roles"].update({"bot": "robot"}), "sources.5.jsonl.roles.bot"),
        (lambda v: v["sources"][0].update({"path": "/nope.jsonl"}), "sources.0.oasst.path"),
        (lambda v: v["sources"][3].update({"name": "answer_first"}), "used twice"),
        (lambda v: v["sources"][1].update({"epoch": 2}), "sources.1.gsm8k.epoch"),
        (lambda v: v.update({"too_long": "wrap"}), "too_long"),
        (lambda v: v.update({"tokenizer": "gpt5"}), "unknown tokenizer"),
    ],
)
def test_a_wrong_config_fails_before_any_work_naming_the_field(shared_data, tmp_path, change, message):
    values = config_values(shared_data, tmp_path / "work", write_user_file(tmp_path / "mine.jsonl"))
    change(values)
    code, output = run_build(tmp_path, values)
    assert code == 2 and message in output, output
    assert not (tmp_path / "work").exists()


def test_a_tokenizer_without_chat_tokens_is_refused_before_work(shared_data, tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    plain = Tokenizer(models.BPE())
    plain.pre_tokenizer = pre_tokenizers.ByteLevel()
    plain.train_from_iterator(["a few real words for a tokenizer without chat tokens"] * 3,
                              trainers.BpeTrainer(vocab_size=300, show_progress=False))
    plain.save(str(tmp_path / "plain.json"))
    values = config_values(shared_data, tmp_path / "work", write_user_file(tmp_path / "mine.jsonl"),
                           tokenizer=str(tmp_path / "plain.json"))
    code, output = run_build(tmp_path, values)
    assert code == 2 and "lacks fineforge's special tokens" in output and "train_bpe" in output
    assert not (tmp_path / "work").exists()
