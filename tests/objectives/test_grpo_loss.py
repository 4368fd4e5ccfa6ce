"""Closed-form checks of the GRPO family's loss pieces (objectives/grpo_loss.py)."""

from __future__ import annotations

import math

import pytest
import torch

from tuneforge.objectives.grpo_loss import (
    aggregate,
    clipped_surrogate,
    group_advantages,
    k3_kl,
    log_importance_weights,
    overlong_penalty,
    rloo_advantages,
    zero_variance_groups,
)


def test_group_advantages_of_1110_use_the_sample_std():
    adv = group_advantages(torch.tensor([1.0, 1.0, 1.0, 0.0]), 4, "group")
    # mean 0.75; sample std sqrt((3 * 0.0625 + 0.5625) / 3) = 0.5
    assert torch.allclose(adv, torch.tensor([0.5, 0.5, 0.5, -1.5]), atol=1e-6)


def test_batch_and_none_scaling():
    rewards = torch.tensor([1.0, 1.0, 1.0, 0.0, 2.0, 0.0, 0.0, 0.0])
    none = group_advantages(rewards, 4, "none")
    assert torch.allclose(none, torch.tensor([0.25, 0.25, 0.25, -0.75, 1.5, -0.5, -0.5, -0.5]))
    batch = group_advantages(rewards, 4, "batch")
    assert torch.allclose(batch, none / rewards.std(), atol=1e-6)  # one batch-wide std (n - 1)


def test_all_equal_groups_give_zero_advantage_and_are_flagged():
    rewards = torch.tensor([0.3, 0.3, 0.3, 1.0, 0.0, 1.0])
    assert zero_variance_groups(rewards, 3).tolist() == [True, False]
    for scale in ("group", "batch", "none"):
        adv = group_advantages(rewards, 3, scale)
        assert adv[:3].abs().max().item() == 0.0
        assert adv[3:].abs().sum() > 0
    assert rloo_advantages(rewards, 3)[:3].abs().max().item() < 1e-7


def test_rloo_baseline_is_the_mean_of_the_others():
    adv = rloo_advantages(torch.tensor([1.0, 1.0, 1.0, 0.0]), 4)
    assert torch.allclose(adv, torch.tensor([1 / 3, 1 / 3, 1 / 3, -1.0]), atol=1e-6)
    r = torch.tensor([0.2, 1.5, -0.7, 3.0, 0.0])
    assert torch.allclose(rloo_advantages(r, 5), 5 / 4 * (r - r.mean()), atol=1e-6)


def test_soft_overlong_penalty_at_three_lengths():
    pen = overlong_penalty(torch.tensor([10, 56, 64]), max_length=64, buffer=16, penalty=1.0)
    # up to 48 tokens: 0; at 56: halfway down the ramp; at 64 (the cap): the whole penalty
    assert torch.allclose(pen, torch.tensor([0.0, -0.5, -1.0]))
    assert overlong_penalty(torch.tensor([80]), 64, 16, 2.0).item() == -2.0
    assert overlong_penalty(torch.tensor([64]), 64, 0).item() == 0.0


def test_ratio_is_one_and_kl_zero_when_policy_equals_old_and_ref():
    logps = torch.randn(3, 5)
    mask = torch.ones(3, 5)
    for level in ("token", "sequence"):
        w = log_importance_weights(logps, logps.clone(), mask, level)
        assert torch.all(w == 0)
    assert torch.all(k3_kl(logps, logps.clone()) == 0)


def test_gspo_weight_is_the_mean_token_log_ratio():
    logps = torch.tensor([[-1.0, -2.0, -3.0]])
    old = torch.tensor([[-1.5, -2.0, -9.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    w = log_importance_weights(logps, old, mask, "sequence")
    assert w.shape == (1, 1) and math.isclose(w.item(), 0.25)


def test_k3_closed_form():
    logp, ref = torch.tensor([-1.0]), torch.tensor([-2.0])
    d = -1.0
    assert math.isclose(k3_kl(logp, ref).item(), math.exp(d) - d - 1, rel_tol=1e-6)


def test_clipping_uses_epsilon_low_and_high():
    log_w = torch.log(torch.tensor([[0.5, 1.0, 1.5]]))
    loss_pos, clipped_pos = clipped_surrogate(log_w, torch.tensor([1.0]), 0.2, 0.28)
    # positive advantage: min(w, clip(w)) -> 0.5 (unclipped below), 1.0, 1.28 (clipped at 1 + eps_high)
    assert torch.allclose(-loss_pos, torch.tensor([[0.5, 1.0, 1.28]]))
    assert clipped_pos.tolist() == [[0.0, 0.0, 1.0]]
    loss_neg, clipped_neg = clipped_surrogate(log_w, torch.tensor([-1.0]), 0.2, 0.28)
    # negative advantage: min(-w, -clip(w)) -> -0.8 (clipped at 1 - eps_low), -1.0, -1.5
    assert torch.allclose(-loss_neg, torch.tensor([[-0.8, -1.0, -1.5]]))
    assert clipped_neg.tolist() == [[1.0, 0.0, 0.0]]


HAND = torch.tensor([[1.0, 2.0, 3.0, 0.0], [4.0, 0.0, 0.0, 0.0]])
HAND_MASK = torch.tensor([[1.0, 1.0, 1.0, 0.0], [1.0, 0.0, 0.0, 0.0]])


@pytest.mark.parametrize(
    ("loss_type", "expected"),
    [
        ("grpo", (6 / 3 + 4 / 1) / 2),  # mean of the completions' token means
        ("bnpo", 10 / 4),  # micro-batch sum / its 4 tokens
        ("dr_grpo", 10 / (2 * 8)),  # sum / (2 completions x max_completion_length 8)
        ("dapo", 10 / 20),  # sum / the step's 20 tokens (other micro-batches included)
    ],
)
def test_each_aggregation_denominator(loss_type, expected):
    got = aggregate(HAND, HAND_MASK, loss_type, max_completion_length=8, step_tokens=20)
    assert math.isclose(got.item(), expected, rel_tol=1e-6)


def test_unknown_names_are_refused():
    with pytest.raises(ValueError):
        aggregate(HAND, HAND_MASK, "mean", max_completion_length=8)
    with pytest.raises(ValueError):
        group_advantages(torch.ones(4), 4, "rank")
    with pytest.raises(ValueError):
        group_advantages(torch.ones(5), 4)
