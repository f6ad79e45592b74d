"""The reward model: score position, padding safety, pair expansion and the Bradley-Terry loss by hand, and a
small model learning real OpenAssistant rankings."""

from __future__ import annotations

import math

import pytest
import torch

from fineforge.model.gpt import GPT, GPTConfig
from fineforge.model.reward_model import (
    Pair,
    RewardModel,
    bradley_terry_loss,
    expand_pairs,
    last_token_positions,
    mean_margin,
    pair_indices,
    pairwise_accuracy,
)
from fineforge.model.tokenizer import IM_END, IM_SEP, IM_START, load_tokenizer
from fineforge.tasks.preferences.importers import import_oasst

pytestmark = pytest.mark.usefixtures("torch_one_thread")

TOKENIZER = load_tokenizer("bytes")
END = TOKENIZER.encode_special(IM_END)


def reward_model(seed: int = 0, block_size: int = 128) -> RewardModel:
    torch.manual_seed(seed)
    return RewardModel(GPT(GPTConfig(vocab_size=266, block_size=block_size, n_layer=1, n_head=2, n_embd=32)), END)


def test_last_token_positions():
    tokens = torch.tensor([[1, 9, 2, 9, 0], [9, 3, 3, 3, 3], [1, 2, 9, 9, 9]])
    assert last_token_positions(tokens, 9).tolist() == [3, 0, 4]
    # the padding id may be the end token itself when the real lengths are given
    assert last_token_positions(tokens, 9, torch.tensor([5, 5, 3])).tolist() == [3, 0, 2]
    with pytest.raises(ValueError, match=r"rows \[1\] hold no end token \(id 9\)"):
        last_token_positions(tokens, 9, torch.tensor([3, 0, 5]))


def test_trunk_hidden_states_are_what_the_language_head_reads():
    model = reward_model()
    tokens = torch.randint(0, 256, (2, 20))
    with torch.no_grad():
        hidden = model.trunk.hidden_states(tokens)
        logits, _ = model.trunk(tokens)
        assert torch.allclose(model.trunk.lm_head(hidden), logits, atol=1e-5)


def conversation(user: str, reply: str) -> list[int]:
    """A two-turn conversation in the chat format, ending at the reply's <|im_end|>."""
    text = f"{IM_START}user{IM_SEP}{user}{IM_END}{IM_START}assistant{IM_SEP}{reply}{IM_END}"
    return TOKENIZER.encode_with_special(text)


def test_score_is_read_at_the_last_end_token_and_padding_never_changes_it():
    model = reward_model()
    short, long = conversation("2+2?", "4"), conversation("Name a colour.", "Blue, like the sky at noon.")
    width = len(long) + 5
    padded = torch.tensor([short + [0] * (width - len(short)), long + [0] * (width - len(long))])
    with torch.no_grad():
        alone = model(torch.tensor([short]))
        batch = model(padded)
        # the padding id may be the end token itself, with the lengths
        end_padded = torch.tensor([short + [END] * (width - len(short)), long + [END] * (width - len(long))])
        with_lengths = model(end_padded, torch.tensor([len(short), len(long)]))
        # by hand: the head on the hidden state at the last <|im_end|> (the first turn's end is ignored)
        hidden = model.trunk.hidden_states(torch.tensor([short]))
        by_hand = model.head(hidden[0, len(short) - 1]).item()
        other_reply = model(torch.tensor([conversation("2+2?", "5")]))
    assert batch[0].item() == pytest.approx(alone.item(), abs=1e-5)
    assert torch.allclose(with_lengths, batch, atol=1e-5)
    assert alone.item() == pytest.approx(by_hand, abs=1e-6)
    assert other_reply.item() != pytest.approx(alone.item(), abs=1e-6)
    assert batch.dtype == torch.float32 and batch.shape == (2,)


def test_reward_model_input_checks():
    with pytest.raises(ValueError, match="end_id 300 is outside"):
        RewardModel(GPT(GPTConfig(vocab_size=266, block_size=16, n_layer=1, n_head=2, n_embd=32)), 300)
    with pytest.raises(ValueError, match="no end token"):
        reward_model()(torch.tensor([[1, 2, 3]]))


def test_pair_expansion_by_hand():
    assert expand_pairs([0, 1, 2]) == [Pair(0, 1, 1), Pair(0, 2, 2), Pair(1, 2, 1)]
    # completions listed in any order: ranks 2, 0, 1 -> best is completion 1, then 2, then 0
    assert expand_pairs([2, 0, 1]) == [Pair(1, 2, 1), Pair(1, 0, 2), Pair(2, 0, 1)]
    # a tie makes no pair
    assert expand_pairs([0, 0, 1]) == [Pair(0, 2, 1), Pair(1, 2, 1)]
    assert expand_pairs([1, 1]) == []
    assert len(expand_pairs(list(range(5)))) == 10  # K ranked -> K(K-1)/2 pairs
    assert expand_pairs([2, 0, 1], best_worst_only=True) == [Pair(1, 0, 2)]
    assert expand_pairs([0, 1, 1], best_worst_only=True) == [Pair(0, 1, 1)]
    assert expand_pairs([3, 3], best_worst_only=True) == [] == expand_pairs([], best_worst_only=True)


def test_pair_indices_over_a_flat_batch():
    chosen, rejected, gaps = pair_indices([[1, 0], [0, 1, 2]])
    # first prompt: completions 0, 1 (1 is better); second: completions 2, 3, 4
    assert chosen.tolist() == [1, 2, 2, 3]
    assert rejected.tolist() == [0, 3, 4, 4]
    assert gaps.tolist() == [1, 1, 2, 1]
    chosen, rejected, _ = pair_indices([[1, 0], [0, 1, 2]], best_worst_only=True)
    assert chosen.tolist() == [1, 2] and rejected.tolist() == [0, 4]


def test_bradley_terry_loss_by_hand():
    chosen, rejected = torch.tensor([2.0, 0.0]), torch.tensor([0.0, 0.0])
    # -log sigmoid(2) = log(1 + e^-2), -log sigmoid(0) = log 2
    plain = (math.log(1 + math.exp(-2)) + math.log(2)) / 2
    assert bradley_terry_loss(chosen, rejected).item() == pytest.approx(plain)
    # margin 1: -log sigmoid(1) and -log sigmoid(-1)
    with_margin = (math.log(1 + math.exp(-1)) + math.log(1 + math.exp(1))) / 2
    assert bradley_terry_loss(chosen, rejected, margin=1.0).item() == pytest.approx(with_margin)
    assert bradley_terry_loss(chosen, rejected, margin=torch.tensor([1.0, 1.0])).item() == pytest.approx(with_margin)
    # centering 0.1 x mean((2 + 0)^2, (0 + 0)^2) = 0.1 x 2
    assert bradley_terry_loss(chosen, rejected, centering=0.1).item() == pytest.approx(plain + 0.2)
    with pytest.raises(ValueError, match="non-empty"):
        bradley_terry_loss(torch.zeros(0), torch.zeros(0))
    with pytest.raises(ValueError, match="centering"):
        bradley_terry_loss(chosen, rejected, centering=-1)


def test_bradley_terry_gradient_pushes_chosen_up_and_rejected_down():
    chosen, rejected = torch.tensor([0.5, -1.0], requires_grad=True), torch.tensor([0.0, 1.0], requires_grad=True)
    bradley_terry_loss(chosen, rejected).backward()
    assert (chosen.grad < 0).all() and (rejected.grad > 0).all()
    # d/d chosen of -log sigmoid(d) / 2 is -(1 - sigmoid(d)) / 2
    assert chosen.grad[0].item() == pytest.approx(-(1 - torch.sigmoid(torch.tensor(0.5)).item()) / 2)


def test_accuracy_and_margin():
    chosen, rejected = torch.tensor([1.0, 2.0, 3.0]), torch.tensor([0.0, 2.0, 4.0])
    assert pairwise_accuracy(chosen, rejected) == pytest.approx((1 + 0.5 + 0) / 3)
    assert mean_margin(chosen, rejected) == pytest.approx(0.0)


def test_a_small_reward_model_learns_real_oasst_rankings(shared_data):
    judgements = import_oasst(shared_data / "sft" / "oasst-en-100-trees.jsonl").judgements[:6]
    rows, rankings = [], []
    for judgement in judgements:
        for completion in judgement.completions:
            rows.append(conversation(judgement.prompt[-1]["content"][-60:], completion.text[:80]))
        rankings.append(judgement.ranks)
    width = max(map(len, rows))
    tokens = torch.tensor([row + [0] * (width - len(row)) for row in rows])
    chosen, rejected, _ = pair_indices(rankings)
    model = reward_model(block_size=256)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)

    def evaluate() -> tuple[float, float]:
        with torch.no_grad():
            scores = model(tokens)
            return bradley_terry_loss(scores[chosen], scores[rejected]).item(), pairwise_accuracy(
                scores[chosen], scores[rejected]
            )

    first_loss, _ = evaluate()
    for _ in range(30):
        scores = model(tokens)
        loss = bradley_terry_loss(scores[chosen], scores[rejected], centering=0.01)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    last_loss, accuracy = evaluate()
    assert len(chosen) == 10  # 6 prompts, 2 or 3 ranked replies each
    assert last_loss < 0.5 * first_loss
    assert accuracy == 1.0
