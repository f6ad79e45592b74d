"""GRPO advantages and the clipped policy-gradient loss on hand-computed numbers (worked out in the comments)."""

from __future__ import annotations

import math

import pytest
import torch

from fineforge.model.rl.advantages import group_advantages, groups_to_train, zero_variance_groups
from fineforge.model.rl.config import GRPOConfig
from fineforge.model.rl.loss import kl_k3, masked_mean, normalise, policy_loss, token_entropy


def test_group_of_four_with_one_correct_sample():
    rewards = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    # mean 0.25 -> centred [0.75, -0.25, -0.25, -0.25]; sample std sqrt((0.75^2 + 3 * 0.25^2) / 3) = 0.5
    grpo = group_advantages(rewards, GRPOConfig())
    assert torch.allclose(grpo, torch.tensor([[1.5, -0.5, -0.5, -0.5]]), atol=1e-5)
    dr_grpo = group_advantages(rewards, GRPOConfig.dr_grpo(generation_budget=256))
    assert torch.allclose(dr_grpo, torch.tensor([[0.75, -0.25, -0.25, -0.25]]))


def test_several_groups_at_once_and_zero_variance_groups():
    rewards = torch.tensor([[1.0, 1.0, 0.0, 0.0], [0.5, 0.5, 0.5, 0.5], [0.0, 0.0, 0.0, 0.0], [2.0, 0.0, 1.0, 1.0]])
    advantages = group_advantages(rewards, GRPOConfig())
    # [1, 1, 0, 0]: centred +-0.5, sample std sqrt(1/3) -> +-0.5 * sqrt(3) = +-0.866
    half_sqrt3 = 0.5 * math.sqrt(3)
    assert torch.allclose(advantages[0], torch.tensor([half_sqrt3, half_sqrt3, -half_sqrt3, -half_sqrt3]), atol=1e-5)
    assert torch.equal(advantages[1], torch.zeros(4)) and torch.equal(advantages[2], torch.zeros(4))
    # [2, 0, 1, 1]: centred [1, -1, 0, 0], sample std sqrt(2/3)
    assert torch.allclose(advantages[3], torch.tensor([1.0, -1.0, 0.0, 0.0]) / math.sqrt(2 / 3), atol=1e-5)
    assert zero_variance_groups(rewards).tolist() == [False, True, True, False]
    assert groups_to_train(rewards, GRPOConfig()).tolist() == [True, True, True, True]
    assert groups_to_train(rewards, GRPOConfig.dapo()).tolist() == [True, False, False, True]


def test_advantage_input_checks():
    with pytest.raises(ValueError, match="prompts, samples per prompt"):
        group_advantages(torch.ones(4), GRPOConfig())
    with pytest.raises(ValueError, match="at least 2 samples"):
        group_advantages(torch.ones(3, 1), GRPOConfig())
    assert group_advantages(torch.ones(3, 1), GRPOConfig(scale_by_std=False)).abs().sum() == 0


# Two completions, three positions; row 1 has two completion tokens. Ratios p / p_old per token:
#   row 0 (advantage +1): 1.0, 1.5, 0.5     row 1 (advantage -1): 0.7, 1.1, (masked)
# With clip [0.8, 1.2] the per-token loss -min(r A, clip(r) A) is
#   row 0: -1.0, -1.2 (clipped: 1.5 > 1.2, A > 0), -0.5 (0.5 < 0.8 but A > 0: the unclipped term is the min)
#   row 1: +0.8 (clipped: 0.7 < 0.8, A < 0), +1.1
# row sums -2.7 and 1.9; 5 completion tokens, 2 of them clipped.
RATIOS = torch.tensor([[1.0, 1.5, 0.5], [0.7, 1.1, 1.0]])
MASK = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
ADVANTAGES = torch.tensor([1.0, -1.0])


def loss_of(config: GRPOConfig, **kwargs):
    old_logp = torch.log(torch.tensor([[0.5, 0.4, 0.6], [0.5, 0.5, 0.3]]))
    logp = (old_logp + torch.log(RATIOS)).requires_grad_(True)
    return logp, policy_loss(logp, old_logp, ADVANTAGES, MASK, config, **kwargs)


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (GRPOConfig(normalisation="token"), (-2.7 + 1.9) / 5),  # DAPO: over all 5 tokens
        (GRPOConfig(normalisation="sequence"), (-2.7 / 3 + 1.9 / 2) / 2),  # GRPO: per completion, then mean
        (GRPOConfig.dr_grpo(generation_budget=4), (-2.7 + 1.9) / (2 * 4)),  # Dr. GRPO: 2 completions x budget 4
    ],
)
def test_normalisation_modes(config, expected):
    _, out = loss_of(config)
    assert out.loss.item() == pytest.approx(expected, abs=1e-6)
    assert out.clip_fraction.item() == pytest.approx(2 / 5)
    assert out.kl.item() == 0.0


def test_clipped_tokens_get_no_gradient_and_the_others_minus_r_times_a():
    logp, out = loss_of(GRPOConfig(normalisation="token"))
    out.loss.backward()
    # d(-r A)/d(log p) = -r A, over the 5 tokens; clipped and masked tokens: 0
    expected = torch.tensor([[-1.0 / 5, 0.0, -0.5 / 5], [0.0, 1.1 / 5, 0.0]])
    assert torch.allclose(logp.grad, expected, atol=1e-6)


def test_clip_higher_widens_the_upper_bound_only():
    _, out = loss_of(GRPOConfig(normalisation="token", clip_high=0.28))
    assert out.loss.item() == pytest.approx((-(1.0 + 1.28 + 0.5) + 1.9) / 5, abs=1e-6)
    _, out = loss_of(GRPOConfig(normalisation="token", clip_low=0.4))  # 0.7 is now inside [0.6, 1.2]
    assert out.loss.item() == pytest.approx((-2.7 + 0.7 + 1.1) / 5, abs=1e-6)
    assert out.clip_fraction.item() == pytest.approx(1 / 5)


def test_micro_batches_add_up_to_the_whole_batch():
    old_logp = torch.log(torch.tensor([[0.5, 0.4, 0.6], [0.5, 0.5, 0.3]]))
    logp = old_logp + torch.log(RATIOS)
    for config in (GRPOConfig(normalisation="token"), GRPOConfig(normalisation="sequence"), GRPOConfig.dr_grpo(4)):
        whole = policy_loss(logp, old_logp, ADVANTAGES, MASK, config).loss
        parts = sum(
            policy_loss(logp[i : i + 1], old_logp[i : i + 1], ADVANTAGES[i : i + 1], MASK[i : i + 1], config,
                        batch_tokens=5, batch_sequences=2).loss
            for i in range(2)
        )
        assert parts.item() == pytest.approx(whole.item(), abs=1e-6), config.normalisation


def test_k3_kl_by_hand_and_as_an_unbiased_estimate():
    # p = 0.5, p_ref = 0.25: r = 0.5, k3 = r - 1 - log r = -0.5 + log 2
    assert kl_k3(torch.log(torch.tensor(0.5)), torch.log(torch.tensor(0.25))).item() == pytest.approx(
        math.log(2) - 0.5
    )
    assert kl_k3(torch.tensor(-1.3), torch.tensor(-1.3)).item() == 0.0
    # averaged over samples of the policy it estimates KL(p || q) exactly
    p, q = torch.tensor([0.5, 0.2, 0.15, 0.1, 0.05]), torch.tensor([0.2, 0.2, 0.2, 0.2, 0.2])
    exact = float((p * (p / q).log()).sum())
    draws = torch.multinomial(p, 200_000, replacement=True, generator=torch.Generator().manual_seed(0))
    estimate = kl_k3(p.log()[draws], q.log()[draws]).mean().item()
    assert estimate == pytest.approx(exact, rel=0.02)


def test_kl_penalty_enters_the_loss_with_beta():
    old_logp = torch.log(torch.tensor([[0.5, 0.5]]))
    ref_logp = torch.log(torch.tensor([[0.25, 0.5]]))
    mask, advantages = torch.ones(1, 2), torch.zeros(1)
    config = GRPOConfig(kl_beta=0.1)
    out = policy_loss(old_logp.clone(), old_logp, advantages, mask, config, ref_logp=ref_logp)
    k3 = math.log(2) - 0.5  # first token as above, second token p == p_ref
    assert out.loss.item() == pytest.approx(0.1 * k3 / 2)
    assert out.kl.item() == pytest.approx(k3 / 2)
    with pytest.raises(ValueError, match="ref_logp"):
        policy_loss(old_logp, old_logp, advantages, mask, config)


def test_entropy_weight_adds_the_masked_entropy_and_sharpens():
    # position 0: logits (log 3, 0) -> p = (3/4, 1/4); position 1 is not a completion token (mask 0)
    logits = torch.tensor([[[math.log(3), 0.0], [0.0, 0.0]]], requires_grad=True)
    logp = torch.log_softmax(logits, dim=-1)[..., 0]
    mask, advantages = torch.tensor([[1.0, 0.0]]), torch.zeros(1)  # no advantage: only the entropy term is left
    out = policy_loss(logp, logp.detach(), advantages, mask, GRPOConfig(entropy_weight=0.5),
                      entropy=token_entropy(logits))
    h = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert out.loss.item() == pytest.approx(0.5 * h)  # token normalisation: one completion token
    out.loss.backward()
    # dH/dz_i = -p_i (log p_i + H): descending it raises the likelier token's logit (sharpens) ...
    expected = [-0.5 * p * (math.log(p) + h) for p in (0.75, 0.25)]
    assert logits.grad[0, 0].tolist() == pytest.approx(expected)
    assert expected[0] < 0 < expected[1]
    assert logits.grad[0, 1].tolist() == [0.0, 0.0]  # ... and the masked position gets nothing
    # a negative weight is PPO's entropy bonus; without the entropy the loss refuses
    bonus = policy_loss(logp, logp.detach(), advantages, mask, GRPOConfig(entropy_weight=-0.5),
                        entropy=token_entropy(logits))
    assert bonus.loss.item() == pytest.approx(-0.5 * h)
    with pytest.raises(ValueError, match="entropy"):
        policy_loss(logp, logp.detach(), advantages, mask, GRPOConfig(entropy_weight=0.5))


def test_config_errors_name_the_field():
    for kwargs, field in [
        ({"normalisation": "words"}, "normalisation"),
        ({"normalisation": "constant"}, "constant_normaliser"),
        ({"clip_low": 1.0}, "clip_low"),
        ({"clip_high": -0.1}, "clip_high"),
        ({"kl_beta": -1}, "kl_beta"),
        ({"std_eps": 0}, "std_eps"),
    ]:
        with pytest.raises(ValueError, match=f"GRPOConfig.{field}"):
            GRPOConfig(**kwargs)


def test_shape_checks():
    with pytest.raises(ValueError, match="differ"):
        policy_loss(torch.zeros(2, 3), torch.zeros(2, 2), torch.zeros(2), torch.ones(2, 3), GRPOConfig())
    with pytest.raises(ValueError, match="advantages"):
        policy_loss(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(3), torch.ones(2, 3), GRPOConfig())


def test_entropy_and_masked_mean():
    uniform, certain = torch.zeros(7), torch.tensor([0.0, -1e4, -1e4])
    assert token_entropy(uniform).item() == pytest.approx(math.log(7))
    assert token_entropy(certain).item() == pytest.approx(0.0, abs=1e-6)
    assert masked_mean(torch.tensor([1.0, 2.0, 9.0]), torch.tensor([1, 1, 0])).item() == 1.5
    assert masked_mean(torch.tensor([1.0]), torch.tensor([0])).item() == 0.0
    assert normalise(torch.ones(1, 2), torch.zeros(1, 2), GRPOConfig()).item() == 0.0


def test_padding_positions_never_reach_the_loss_even_when_not_finite():
    logp = torch.tensor([[-1.0, float("-inf")]], requires_grad=True)
    old_logp = torch.tensor([[-1.0, float("-inf")]])
    for config in (GRPOConfig(), GRPOConfig(normalisation="sequence"), GRPOConfig.dr_grpo(2)):
        ref_logp = torch.tensor([[-2.0, float("nan")]])
        out = policy_loss(logp, old_logp, torch.tensor([1.0]), torch.tensor([[1.0, 0.0]]), config, ref_logp)
        out.loss.backward()
        assert torch.isfinite(out.loss) and torch.isfinite(out.ratio_mean) and torch.isfinite(out.kl)
        assert torch.isfinite(logp.grad).all() and logp.grad[0, 1] == 0
        logp.grad = None
