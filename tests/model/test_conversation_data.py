"""SFT batches from conversation shards: exact rows, weights, deterministic order, exact resume, rank split."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from fineforge.model.chat import Conversation, render
from fineforge.model.conversation_data import ConversationLoader, conversation_loader
from fineforge.model.conversation_shards import conversation_split
from fineforge.model.data import DataPosition
from fineforge.model.gpt import GPT, GPTConfig
from fineforge.model.shards import ShardError, write_shard_set
from fineforge.model.tokenizer import load_tokenizer
from fineforge.tasks.conversations.config import ConversationsConfig
from fineforge.tasks.conversations.job import build_conversations

SEQ_LEN = 255


@pytest.fixture(scope="module")
def tokenizer(shared_data):
    return load_tokenizer("gpt2", shared_data / "tokenizers")


@pytest.fixture(scope="module")
def data_dir(shared_data, tmp_path_factory, tokenizer):
    """GSM8K problems (weight 1) and word problems (weight 0.5), several small train shards."""
    workdir = tmp_path_factory.mktemp("sft-data")
    config = ConversationsConfig(
        workdir=str(workdir), name="mix", tokenizer="gpt2", vocab_dir=str(shared_data / "tokenizers"),
        context_length=SEQ_LEN + 1, val_fraction=0.2, shard_tokens=3000,
        sources=[{"kind": "gsm8k", "path": str(shared_data / "gsm8k" / "train.jsonl"), "limit": 40},
                 {"kind": "word_problems", "count": 30, "weight": 0.5}],
    )
    build_conversations(config, tokenizer)
    return workdir / "conversations" / "mix"


def all_rows(shards):
    """(tokens, mask, weight) of every conversation, in shard order."""
    return [(np.asarray(s.tokens[r["start"]: r["start"] + r["length"]]), np.asarray(s.mask[r["start"]:
             r["start"] + r["length"]]), float(r["weight"])) for s in shards for r in s.index]


def test_rows_are_one_conversation_each_padded_with_shifted_targets_and_weighted_mask(data_dir, tokenizer):
    shards, manifest = conversation_split(data_dir, "train")
    assert len(shards) > 2
    records = [json.loads(line) for line in (data_dir / "train.jsonl").read_text().splitlines()]
    rows = all_rows(shards)
    assert len(rows) == len(records)  # epochs 1: each kept conversation once, in source order
    for (tokens, mask, weight), record in zip(rows, records, strict=True):
        ids, expected_mask = render(Conversation.from_messages(record["messages"]), tokenizer)
        assert tokens.tolist() == ids and mask.tolist() == expected_mask
        assert weight == (1.0 if record["source"] == "gsm8k" else 0.5)

    loader = ConversationLoader(shards, batch_size=4, seq_len=SEQ_LEN, pad_id=manifest["pad_id"], shuffle=False,
                                row_multiple=16)
    inputs, targets, loss_mask = loader.next_batch()
    width = -(-max(tokens.size - 1 for tokens, _, _ in rows[:4]) // 16) * 16
    assert inputs.shape == targets.shape == loss_mask.shape == (4, min(width, SEQ_LEN))
    assert inputs.dtype == targets.dtype == torch.int64 and loss_mask.dtype == torch.float32
    for row, (tokens, mask, weight) in enumerate(rows[:4]):
        n = tokens.size - 1
        assert inputs[row, :n].tolist() == tokens[:-1].tolist() and set(inputs[row, n:].tolist()) <= {50256}
        assert targets[row, :n].tolist() == tokens[1:].tolist() and set(targets[row, n:].tolist()) == {-1}
        assert loss_mask[row, :n].tolist() == (mask[1:] * weight).tolist() and not loss_mask[row, n:].any()


def batches(loader, n: int) -> list[tuple[torch.Tensor, ...]]:
    return [loader.next_batch() for _ in range(n)]


def same(one: list[tuple[torch.Tensor, ...]], other: list[tuple[torch.Tensor, ...]]) -> bool:
    return len(one) == len(other) and all(
        torch.equal(a, b) for x, y in zip(one, other, strict=True) for a, b in zip(x, y, strict=True)
    )


def test_order_is_deterministic_and_resumes_exactly(data_dir):
    loader = conversation_loader(data_dir, "train", batch_size=3, seq_len=SEQ_LEN, seed=11)
    first = batches(loader, 2)
    saved = DataPosition.from_dict(loader.position.to_dict())
    rest = batches(loader, 30)  # past the end of an epoch
    assert loader.position.epoch >= 1
    again = conversation_loader(data_dir, "train", batch_size=3, seq_len=SEQ_LEN, seed=11)
    assert same(batches(again, 2), first)
    resumed = conversation_loader(data_dir, "train", batch_size=3, seq_len=SEQ_LEN, seed=11)
    resumed.restore(saved)
    assert same(batches(resumed, 30), rest)


def conversations_of(batch) -> list[tuple[int, ...]]:
    """Each row's conversation (its inputs up to the padding)."""
    inputs, targets, _ = batch
    return [tuple(row[: int((t != -1).sum())].tolist()) for row, t in zip(inputs, targets, strict=True)]


def test_each_epoch_sees_every_conversation_once_in_a_new_order(data_dir):
    loader = conversation_loader(data_dir, "train", batch_size=2, seq_len=SEQ_LEN, seed=3, group_steps=4)
    steps = loader.num_conversations // 2

    def epoch() -> list[tuple]:
        return [row for _ in range(steps) for row in conversations_of(loader.next_batch())]

    one, two = epoch(), epoch()
    assert len(set(one)) == steps * 2 and set(one) == set(two) and one != two


def test_length_grouping_cuts_padding(data_dir):
    def padding(group_steps: int) -> float:
        loader = conversation_loader(data_dir, "train", batch_size=4, seq_len=SEQ_LEN, seed=2,
                                     group_steps=group_steps, row_multiple=8)
        batches = [loader.next_batch() for _ in range(loader.num_conversations // 4)]
        return sum(int((t == -1).sum()) for _, t, _ in batches) / sum(t.numel() for _, t, _ in batches)

    assert padding(16) < 0.5 * padding(1)


def test_ranks_split_each_step(data_dir):
    single = conversation_loader(data_dir, "train", batch_size=4, seq_len=SEQ_LEN, seed=5)
    ranks = [conversation_loader(data_dir, "train", batch_size=2, seq_len=SEQ_LEN, rank=r, world_size=2, seed=5)
             for r in range(2)]
    for _ in range(3):
        whole = single.next_batch()
        parts = [loader.next_batch() for loader in ranks]
        for column in range(3):
            assert torch.equal(whole[column], torch.cat([p[column] for p in parts]))


def test_the_loss_counts_only_trainable_targets(data_dir, torch_one_thread):
    loader = conversation_loader(data_dir, "val", batch_size=2, seq_len=SEQ_LEN, shuffle=False)
    inputs, targets, loss_mask = loader.next_batch()
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=50304, block_size=SEQ_LEN, n_layer=1, n_head=2, n_embd=16))
    logits, loss = model(inputs, targets, loss_mask=loss_mask)
    picked = loss_mask > 0
    expected = torch.nn.functional.cross_entropy(logits[picked].float(), targets[picked])
    assert torch.allclose(loss, expected, atol=1e-5)


def test_bad_inputs_fail_clearly(data_dir, tmp_path, shared_data):
    with pytest.raises(ShardError, match="raise seq_len"):
        conversation_loader(data_dir, "train", batch_size=2, seq_len=32)
    with pytest.raises(ShardError, match="fewer than one micro-step"):
        conversation_loader(data_dir, "val", batch_size=500, seq_len=SEQ_LEN)
    copy = tmp_path / "copy"
    copy.mkdir()
    for path in data_dir.iterdir():
        (copy / path.name).write_bytes(path.read_bytes())
    mask_file = copy / "train_000000.mask.npy"
    data = bytearray(mask_file.read_bytes())
    data[-1] ^= 1
    mask_file.write_bytes(bytes(data))
    with pytest.raises(ShardError, match="mask.npy: sha256 does not match"):
        conversation_split(copy, "train")
    tokens_only = tmp_path / "tokens"
    write_shard_set(tokens_only, [("train", np.arange(100))], load_tokenizer("bytes"))
    with pytest.raises(ShardError, match="not a conversation shard set"):
        conversation_split(tokens_only, "train")
