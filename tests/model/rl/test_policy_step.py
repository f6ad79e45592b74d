"""Per-token log-probs under a real GPT, and one GRPO step on a real GSM8K problem moving log-probs the right way."""

from __future__ import annotations

import json

import pytest
import torch

from fineforge.model.engine import Engine, SamplingConfig
from fineforge.model.gpt import GPT, GPTConfig
from fineforge.model.rl.advantages import group_advantages
from fineforge.model.rl.config import GRPOConfig
from fineforge.model.rl.logprobs import batch_rollouts, completion_logprobs
from fineforge.model.rl.loss import policy_loss
from fineforge.model.rl.rollouts import RolloutSampler
from fineforge.model.rl.stage_config import RLConfig
from fineforge.model.tokenizer import load_tokenizer
from fineforge.model.verifiers import SafeScorer, get_verifier

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def small_gpt(seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=266, block_size=256, n_layer=1, n_head=2, n_embd=32))


@pytest.fixture(scope="module")
def robe_problem(shared_data) -> dict:
    with open(shared_data / "gsm8k" / "test.jsonl", encoding="utf-8") as f:
        line = json.loads(f.readlines()[1])
    assert line["question"].startswith("A robe takes 2 bolts")
    return line


# the real solution, in the SFT data's form, then three wrong ones
COMPLETIONS = [
    "It takes 2/2=1 bolt of white fiber. So the total is 2+1=3 bolts. The answer is 3.",
    "It takes 2*2=4 bolts of white fiber. So the total is 2+4=6 bolts. The answer is 6.",
    "Half of 2 is 1. The answer is 1.",
    "It takes 2 bolts of blue fiber. The answer is 2.",
]


def rollouts(problem: dict):
    tok = load_tokenizer("bytes")
    prompt = tok.encode(problem["question"])
    end = tok.encode_special("<|im_end|>")
    return batch_rollouts([prompt] * len(COMPLETIONS), [tok.encode(c) + [end] for c in COMPLETIONS], pad_id=tok.eot_id)


def test_batch_rollouts_masks_exactly_the_completion_targets():
    batch = batch_rollouts([[5, 6, 7], [8]], [[1, 2], [3, 4, 9]], pad_id=0)
    assert batch.tokens.tolist() == [[5, 6, 7, 1, 2], [8, 3, 4, 9, 0]]
    # position t scores token t + 1: row 0's completion tokens sit at 3, 4 -> positions 2, 3
    assert batch.completion_mask.tolist() == [[0, 0, 1, 1], [1, 1, 1, 0]]
    assert batch.completion_lengths.tolist() == [2, 3]
    with pytest.raises(ValueError, match="at least one token"):
        batch_rollouts([[]], [[1]], pad_id=0)
    with pytest.raises(ValueError, match="2 prompts but 1 completions"):
        batch_rollouts([[1], [2]], [[3]], pad_id=0)


def test_logprobs_agree_with_the_models_own_masked_loss(robe_problem):
    model, batch = small_gpt(), rollouts(robe_problem)
    with torch.no_grad():
        logp, entropy = completion_logprobs(model, batch.tokens, with_entropy=True)
        for row in range(batch.tokens.shape[0]):
            keep = batch.completion_mask[row].bool()
            _, loss = model(batch.tokens[row : row + 1, :-1], batch.tokens[row : row + 1, 1:],
                            loss_mask=batch.completion_mask[row : row + 1])
            assert (-logp[row][keep].mean()).item() == pytest.approx(loss.item(), rel=1e-5)
    assert logp.shape == entropy.shape == batch.completion_mask.shape
    assert (logp <= 0).all() and (entropy >= 0).all()


def test_the_entropy_is_detached_unless_the_loss_needs_its_gradient(robe_problem):
    model, batch = small_gpt(), rollouts(robe_problem)
    _, detached = completion_logprobs(model, batch.tokens, with_entropy=True)
    _, entropy = completion_logprobs(model, batch.tokens, with_entropy=True, entropy_grad=True)
    assert not detached.requires_grad and entropy.requires_grad
    assert torch.equal(entropy.detach(), detached)


def test_padding_does_not_change_a_rows_logprobs(robe_problem):
    model, batch = small_gpt(), rollouts(robe_problem)
    shortest = int(batch.completion_lengths.argmin())
    length = int(batch.completion_mask[shortest].nonzero().max()) + 2  # the row without its padding
    assert length < batch.tokens.shape[1]
    with torch.no_grad():
        padded, _ = completion_logprobs(model, batch.tokens)
        unpadded, _ = completion_logprobs(model, batch.tokens[shortest : shortest + 1, :length])
    keep = batch.completion_mask[shortest, : length - 1].bool()
    assert torch.allclose(padded[shortest, : length - 1][keep], unpadded[0][keep], atol=1e-5)


def test_temperature_divides_the_logits(robe_problem):
    model, batch = small_gpt(), rollouts(robe_problem)
    with torch.no_grad():
        logp, _ = completion_logprobs(model, batch.tokens, temperature=2.0)
        logits, _ = model(batch.tokens[:, :-1])
        expected = torch.log_softmax(logits / 2.0, dim=-1).gather(-1, batch.tokens[:, 1:, None]).squeeze(-1)
    assert torch.allclose(logp, expected, atol=1e-5)
    with pytest.raises(ValueError, match="temperature"):
        completion_logprobs(model, batch.tokens, temperature=0.0)


def sequence_logprobs(model: GPT, batch) -> torch.Tensor:
    with torch.no_grad():
        logp, _ = completion_logprobs(model, batch.tokens)
    return (logp * batch.completion_mask).sum(dim=1)


def one_grpo_step(problem: dict, rewards: torch.Tensor, config: GRPOConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Sequence log-probs of the four completions before and after one SGD step on the GRPO loss."""
    model, batch = small_gpt(), rollouts(problem)
    before = sequence_logprobs(model, batch)
    advantages = group_advantages(rewards[None, :], config)[0]
    logp, _ = completion_logprobs(model, batch.tokens)
    loss = policy_loss(logp, logp.detach(), advantages, batch.completion_mask, config).loss
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return before, sequence_logprobs(model, batch)


@pytest.mark.parametrize("config", [GRPOConfig(), GRPOConfig(normalisation="sequence"), GRPOConfig.dr_grpo(64)])
def test_one_step_reinforces_the_verified_completion(robe_problem, config):
    scorer = SafeScorer(get_verifier("gsm8k"))
    rewards = torch.tensor([scorer(robe_problem, c) for c in COMPLETIONS])
    assert rewards.tolist() == [1.0, 0.0, 0.0, 0.0]
    before, after = one_grpo_step(robe_problem, rewards, config)
    assert after[0] > before[0], (before, after)  # the verified solution became more likely
    # and more likely relative to every wrong one (they share many bytes with it, so they may rise too)
    assert (after[0] - after[1:] > before[0] - before[1:]).all(), (before, after)


def test_the_sign_follows_the_reward(robe_problem):
    # the same step with the rewards reversed pushes the first completion down instead
    before, after = one_grpo_step(robe_problem, torch.tensor([0.0, 1.0, 1.0, 1.0]), GRPOConfig())
    assert after[0] < before[0], (before, after)
    assert (after[0] - after[1:] < before[0] - before[1:]).all(), (before, after)
    # a group without reward variance has zero advantages: nothing moves
    before, after = one_grpo_step(robe_problem, torch.tensor([1.0, 1.0, 1.0, 1.0]), GRPOConfig())
    assert torch.allclose(after, before)


def test_one_update_per_batch_needs_no_old_logprobs_pass(robe_problem):
    # the ratio to a separately recorded old policy (the same weights) is 1: the update's own log-probs, detached,
    # give the same loss and gradient, and the stage skips that forward pass over the batch
    batch = rollouts(robe_problem)
    advantages = torch.tensor([1.5, -0.5, -0.5, -0.5])
    grads = []
    for own in (False, True):
        model = small_gpt()
        with torch.no_grad():
            recorded, _ = completion_logprobs(model, batch.tokens)
        logp, _ = completion_logprobs(model, batch.tokens)
        loss = policy_loss(logp, logp.detach() if own else recorded, advantages, batch.completion_mask,
                           GRPOConfig()).loss
        loss.backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    assert torch.allclose(grads[0], grads[1], atol=1e-6)
    fields = {"run_dir": "run", "init_checkpoint": "init", "prompts": "p.jsonl"}
    assert not RLConfig(**fields).records_old_logprobs
    assert RLConfig(**fields, ppo_epochs=2).records_old_logprobs  # the ratio of the second update
    assert RLConfig(**fields, minibatches=2).records_old_logprobs
    assert RLConfig(**fields, kl_beta=0.1, kl_target=0.05).records_old_logprobs  # the adaptive KL's measure


def test_the_sampler_samples_on_its_own_thread_count():
    """Roll-outs sample on `threads` CPU threads (a small model's fastest) and give the update its own back."""
    tok = load_tokenizer("bytes")
    model, seen = small_gpt(), []
    model.register_forward_hook(lambda module, inputs, output: seen.append(torch.get_num_threads()))
    sampling = SamplingConfig(max_new_tokens=4, temperature=1.0)
    torch.set_num_threads(2)
    for threads, expected in ((1, 1), (None, 2)):
        seen.clear()
        sampler = RolloutSampler(Engine(model, vocab_size=tok.vocab_size), sampling, tok,
                                 tok.encode_special("<|im_end|>"), threads=threads)
        rollouts = sampler.sample([tok.encode("2 + 2 =")], 2, seed=1, first_group=0)
        assert len(rollouts) == 2 and seen and set(seen) == {expected}
        assert torch.get_num_threads() == 2
