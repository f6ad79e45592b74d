"""The KL weight: fixed, or adapted towards a target by hand-checked steps (Ziegler et al.'s controller)."""

from __future__ import annotations

import pytest
import torch

from fineforge.model.rl.kl_control import KLController, sampled_kl


def test_beta_moves_towards_the_target_by_the_clipped_proportional_error():
    controller = KLController(beta=0.1, target=0.5, horizon=100)
    # KL 0.6: error 0.6 / 0.5 - 1 = 0.2; 10 samples of 100: beta x (1 + 0.2 x 0.1) = 0.102
    assert controller.update(0.6, 10) == pytest.approx(0.102)
    # KL 5.0: error 9 clipped to 0.2
    assert controller.update(5.0, 10) == pytest.approx(0.102 * 1.02)
    # KL 0.4: error -0.2 (below the target: beta falls)
    assert controller.update(0.4, 50) == pytest.approx(0.102 * 1.02 * 0.9)
    assert KLController(beta=0.1).update(5.0, 10) == 0.1  # no target: fixed


def test_sampled_kl_sums_over_trained_tokens_only():
    old = [torch.tensor([-1.0, -2.0, -3.0]), torch.tensor([-0.5])]
    ref = [torch.tensor([-1.5, -2.0, -1.0]), torch.tensor([-1.5])]
    weights = [torch.tensor([1.0, 1.0, 0.0]), torch.tensor([1.0])]  # the third token was a tool's output
    assert sampled_kl(old, ref, weights) == pytest.approx((0.5 + 0.0 + 1.0, 3.0))
