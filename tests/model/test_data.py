"""The token loader: rank sharding, exact restore, per-epoch shuffling, on real tinyshakespeare shards."""

from __future__ import annotations

import pytest
import torch

from fineforge.model.data import DataPosition, TokenLoader, split_shards
from fineforge.model.shards import ShardError
from testkit.shakespeare import write_shakespeare_shards


@pytest.fixture(scope="module")
def train_shards(tmp_path_factory, shared_data):
    data = write_shakespeare_shards(shared_data / "corpora" / "tinyshakespeare.txt", tmp_path_factory.mktemp("d"),
                                    limit=20_000)
    return split_shards(data, "train")[0]


def batches(loader: TokenLoader, n: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [loader.next_batch() for _ in range(n)]


@pytest.mark.parametrize("shuffle", [False, True])
def test_ranks_split_what_one_process_reads(train_shards, shuffle):
    whole = TokenLoader(train_shards, 8, 16, shuffle=shuffle, seed=3)
    ranks = [TokenLoader(train_shards, 4, 16, rank=r, world_size=2, shuffle=shuffle, seed=3) for r in range(2)]
    for _ in range(300):  # several epochs over both shards
        x, y = whole.next_batch()
        parts = [loader.next_batch() for loader in ranks]
        assert torch.equal(x, torch.cat([p[0] for p in parts])) and torch.equal(y, torch.cat([p[1] for p in parts]))
        assert torch.equal(x[:, 1:], y[:, :-1])
    assert whole.position == ranks[0].position and whole.position.epoch >= 2


def test_restore_continues_exactly_and_epochs_reshuffle(train_shards):
    loader = TokenLoader(train_shards, 4, 32, shuffle=True, seed=1)
    first_epoch = batches(loader, 20)
    saved = DataPosition.from_dict(loader.position.to_dict())
    expected = batches(loader, 200)
    again = TokenLoader(train_shards, 4, 32, shuffle=True, seed=1)
    again.restore(saved)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(batches(again, 200), expected, strict=True))
    assert loader.position.epoch >= 1
    restart = TokenLoader(train_shards, 4, 32, shuffle=True, seed=1)
    restart.restore(DataPosition(shard=0, offset=0, epoch=1))
    assert not torch.equal(restart.next_batch()[0], first_epoch[0][0])  # a new order in the next epoch


def test_shards_too_small_for_one_step_are_refused(train_shards):
    with pytest.raises(ShardError, match="no shard holds one micro-step"):
        TokenLoader(train_shards, 64, 1024)
