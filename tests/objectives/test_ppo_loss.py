"""PPO's loss pieces against hand-computed closed forms and a plain reference loop (objectives/ppo_loss.py)."""

from __future__ import annotations

import pytest
import torch

from tuneforge.objectives.ppo_loss import (
    adaptive_kl_coef,
    clipped_policy_loss,
    clipped_value_loss,
    gae,
    kl_penalised_rewards,
    last_token_index,
    whiten,
)


def reference_gae(rewards: list[float], values: list[float], gamma: float, lam: float) -> tuple[list[float], list[float]]:
    """The textbook definition, one completion, no vectorisation: A_t = sum_l (gamma lam)^l delta_{t+l}."""
    T = len(rewards)
    v = values + [0.0]  # terminal state after the last token
    deltas = [rewards[t] + gamma * v[t + 1] - v[t] for t in range(T)]
    adv = [sum((gamma * lam) ** l * deltas[t + l] for l in range(T - t)) for t in range(T)]
    return adv, [a + values[t] for t, a in enumerate(adv)]


def test_gae_three_tokens_by_hand():
    """r = [0, 0, 1], V = [0.5, 0.4, 0.2], gamma 0.9, lambda 0.8, worked out on paper:
    delta_2 = 1 - 0.2 = 0.8; delta_1 = 0 + 0.9*0.2 - 0.4 = -0.22; delta_0 = 0 + 0.9*0.4 - 0.5 = -0.14;
    A_2 = 0.8; A_1 = -0.22 + 0.72*0.8 = 0.356; A_0 = -0.14 + 0.72*0.356 = 0.11632.
    """
    rewards = torch.tensor([[0.0, 0.0, 1.0]])
    values = torch.tensor([[0.5, 0.4, 0.2]])
    adv, ret = gae(rewards, values, torch.ones(1, 3), gamma=0.9, lam=0.8)
    assert torch.allclose(adv, torch.tensor([[0.11632, 0.356, 0.8]]), atol=1e-6)
    assert torch.allclose(ret, torch.tensor([[0.61632, 0.756, 1.0]]), atol=1e-6)


@pytest.mark.parametrize(("gamma", "lam"), [(0.9, 0.8), (1.0, 0.95), (0.5, 0.0), (0.99, 1.0)])
def test_gae_matches_the_reference_loop_with_padding(gamma, lam):
    """Two completions of different lengths in one padded batch: each equals the loop over its own tokens; padding stays 0."""
    torch.manual_seed(0)
    rewards, values = torch.randn(2, 5), torch.randn(2, 5)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], dtype=torch.float32)
    adv, ret = gae(rewards, values, mask, gamma, lam)
    for i, n in enumerate([5, 3]):
        want_adv, want_ret = reference_gae(rewards[i, :n].tolist(), values[i, :n].tolist(), gamma, lam)
        assert torch.allclose(adv[i, :n], torch.tensor(want_adv), atol=1e-5)
        assert torch.allclose(ret[i, :n], torch.tensor(want_ret), atol=1e-5)
    assert adv[1, 3:].abs().sum() == 0 and ret[1, 3:].abs().sum() == 0


def test_gae_with_gamma_lambda_one_and_zero_values_is_reward_to_go():
    rewards = torch.tensor([[0.1, -0.2, 0.3, 1.0], [0.5, 2.0, 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]], dtype=torch.float32)
    adv, ret = gae(rewards, torch.zeros_like(rewards), mask, gamma=1.0, lam=1.0)
    to_go = torch.tensor([[1.2, 1.1, 1.3, 1.0], [2.5, 2.0, 0.0, 0.0]])
    assert torch.allclose(ret, to_go, atol=1e-6)
    assert torch.allclose(adv, to_go, atol=1e-6)


def test_gae_with_lambda_one_is_return_minus_value():
    rewards, values = torch.tensor([[0.0, 0.0, 2.0]]), torch.tensor([[1.0, 0.5, -1.0]])
    adv, ret = gae(rewards, values, torch.ones(1, 3), gamma=1.0, lam=1.0)
    assert torch.allclose(ret, torch.tensor([[2.0, 2.0, 2.0]]))
    assert torch.allclose(adv, torch.tensor([[1.0, 1.5, 3.0]]))


def test_whitening_gives_mean_zero_std_one_over_the_mask():
    values = torch.tensor([[1.0, 2.0, 3.0, 99.0], [4.0, 5.0, -7.0, -7.0]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]], dtype=torch.float32)
    out = whiten(values, mask)
    kept = out[mask.bool()]
    assert torch.allclose(kept.mean(), torch.tensor(0.0), atol=1e-6)
    assert torch.allclose(kept.std(), torch.tensor(1.0), atol=1e-5)  # sample std (n - 1)
    # the padding values (99, -7) did not enter the statistics: by hand, mean 3, sample std sqrt(2.5)
    assert torch.allclose(kept, (torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0]) - 3) / 2.5**0.5, atol=1e-5)
    assert out[~mask.bool()].abs().sum() == 0
    assert torch.allclose(whiten(values, mask, shift_mean=False)[mask.bool()], kept + 3, atol=1e-5)


def test_kl_folded_into_the_per_token_reward():
    logps = torch.tensor([[-1.0, -2.0, -0.5, -3.0], [-0.2, -0.4, -9.0, -9.0]])
    ref = torch.tensor([[-1.5, -1.0, -0.5, -1.0], [-0.1, -0.4, -1.0, -1.0]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]], dtype=torch.float32)
    rewards, kl = kl_penalised_rewards(logps, ref, mask, torch.tensor([2.0, -1.0]), kl_coef=0.1)
    assert torch.allclose(kl, torch.tensor([[0.5, -1.0, 0.0, -2.0], [-0.1, 0.0, 0.0, 0.0]]))
    want = torch.tensor([[-0.05, 0.1, 0.0, 0.2 + 2.0], [0.01, 0.0 - 1.0, 0.0, 0.0]])  # score at the last *real* token
    assert torch.allclose(rewards, want, atol=1e-6)
    assert last_token_index(mask).tolist() == [3, 1]


def test_policy_loss_on_both_sides_of_the_clip():
    """eps 0.2. ratios 1.5 / 0.5 / 1.1 with A = +1, -1, +1, -1:
    A=+1, w=1.5: clipped 1.2 < 1.5, loss = -1.2, clipped;  A=-1, w=1.5: loss = max(1.5, 1.2) = 1.5, not clipped;
    A=+1, w=0.5: loss = max(-0.5, -0.8) = -0.5, not clipped; A=-1, w=0.5: loss = max(0.5, 0.8) = 0.8, clipped;
    A=+1, w=1.1: inside the range, loss -1.1, not clipped.
    """
    ratio = torch.tensor([[1.5, 1.5, 0.5, 0.5, 1.1]])
    adv = torch.tensor([[1.0, -1.0, 1.0, -1.0, 1.0]])
    loss, clipped = clipped_policy_loss(torch.log(ratio), torch.zeros_like(ratio), adv, epsilon=0.2)
    assert torch.allclose(loss, torch.tensor([[-1.2, 1.5, -0.5, 0.8, -1.1]]), atol=1e-6)
    assert clipped.tolist() == [[1.0, 0.0, 0.0, 1.0, 0.0]]


def test_policy_loss_gradient_is_zero_where_clipped():
    logps = torch.log(torch.tensor([[1.5, 1.1]])).requires_grad_(True)
    loss, _ = clipped_policy_loss(logps, torch.zeros(1, 2), torch.ones(1, 2), epsilon=0.2)
    loss.sum().backward()
    assert logps.grad[0, 0] == 0  # clipped: no push beyond 1 + eps
    assert torch.allclose(logps.grad[0, 1], torch.tensor(-1.1))  # d(-w)/dlogp = -w


def test_value_loss_on_both_sides_of_the_clip():
    """c = 0.2, V_old = 0 everywhere.
    V=0.5, R=1: V_clip 0.2, (0.5-1)^2=0.25 < (0.2-1)^2=0.64 -> 0.32, clipped;
    V=0.5, R=0: 0.25 > 0.04 -> 0.125, not clipped; V=0.1, R=1: inside, 0.5*0.81 = 0.405, not clipped;
    V=-0.5, R=-1: V_clip -0.2, 0.25 < 0.64 -> 0.32, clipped.
    """
    values = torch.tensor([[0.5, 0.5, 0.1, -0.5]])
    returns = torch.tensor([[1.0, 0.0, 1.0, -1.0]])
    loss, clipped = clipped_value_loss(values, torch.zeros_like(values), returns, cliprange=0.2)
    assert torch.allclose(loss, torch.tensor([[0.32, 0.125, 0.405, 0.32]]), atol=1e-6)
    assert clipped.tolist() == [[1.0, 0.0, 0.0, 1.0]]


@pytest.mark.parametrize(
    ("kl", "expected"),
    [
        (3.0, 0.1 * (1 + 0.2 * 4 / 8)),  # far above the target: the error is clipped to +0.2
        (1.1, 0.1 * (1 + 0.1 * 4 / 8)),  # 10% above: kl / target - 1 = 0.1
        (0.0, 0.1 * (1 - 0.2 * 4 / 8)),  # no KL at all: clipped to -0.2
    ],
)
def test_adaptive_kl_coef_follows_ziegler_et_al(kl: float, expected: float) -> None:
    assert adaptive_kl_coef(0.1, kl, target=1.0, horizon=8, completions=4) == pytest.approx(expected, rel=1e-12)
