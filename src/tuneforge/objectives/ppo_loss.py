"""PPO-RLHF's loss pieces as plain tensor functions: per-token rewards with the KL, GAE, whitening, clipped losses.

TRL 1.16 removed its PPO trainer, so this is tuneforge's own code, written after the formulas of
Ziegler et al. (2019) and Ouyang et al. (2022) as TRL's last PPO trainer implemented them; each
function is checked against a closed form in tests/objectives/test_ppo_loss.py and the trainer
(:mod:`tuneforge.train.ppo_trainer`) only wires them together. Conventions:

- Per-token tensors are ``[completions, T]`` with a 0/1 float ``mask`` over the completion tokens that
  count (up to and including the first end token; a truncated completion is all ones). Token ``t``'s
  value ``V_t`` is the value head's prediction at the position that predicts token ``t`` (the state
  before it is generated); the state after the last real token is terminal (value 0).
- Means and standard deviations over the mask: the std is the *sample* std (divide by n - 1).
"""

from __future__ import annotations

import torch

WHITEN_EPS = 1e-8  # added to the variance before the square root, so a constant tensor does not divide by 0


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` where ``mask`` is 1 (0 when the mask is empty)."""
    return (values * mask).sum() / mask.sum().clamp(min=1.0)


def last_token_index(mask: torch.Tensor) -> torch.Tensor:
    """``[N]`` index of each row's last masked token (0 for a row with none)."""
    positions = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
    return (positions * (mask > 0)).max(dim=1).values


def kl_penalised_rewards(
    logps: torch.Tensor, ref_logps: torch.Tensor, mask: torch.Tensor, scores: torch.Tensor, kl_coef: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(per-token rewards, per-token k1 KL): ``r_t = -kl_coef x (logp_t - ref_logp_t)``, plus ``scores[i]`` at row i's last token.

    k1 (the plain log-ratio of the sampled token) is unbiased for KL(pi || ref) when the tokens are
    sampled from pi, which rollout tokens are; it is what InstructGPT's reward subtracts. Both outputs
    are 0 outside the mask.
    """
    kl = (logps - ref_logps) * mask
    rewards = -kl_coef * kl
    rows = torch.arange(mask.shape[0], device=mask.device)
    rewards = rewards.index_put((rows, last_token_index(mask)), scores.to(rewards.dtype), accumulate=True)
    return rewards * mask, kl


ADAPTIVE_KL_CLIP = 0.2  # Ziegler et al. (2019): the proportional error is clipped to [-0.2, 0.2]


def adaptive_kl_coef(kl_coef: float, kl: float, target: float, horizon: int, completions: int) -> float:
    """The next rollout's KL weight under Ziegler et al.'s adaptive controller (their section 2.2).

    ``e = clip(kl / target - 1, -0.2, 0.2)`` and ``kl_coef x (1 + e x completions / horizon)``: a KL
    above the target raises the weight, one below lowers it, by at most 20% per ``horizon`` samples.
    ``kl`` is the rollout's mean KL per completion (the logged ``kl``).
    """
    error = min(max(kl / target - 1.0, -ADAPTIVE_KL_CLIP), ADAPTIVE_KL_CLIP)
    return kl_coef * (1.0 + error * completions / horizon)


def gae(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation: (advantages, returns), both 0 outside the mask.

    ``delta_t = r_t + gamma V_{t+1} - V_t`` and ``A_t = delta_t + gamma lam A_{t+1}``, with ``V`` and
    ``A`` 0 past the last real token (terminal). Returns are ``A + V`` (the value targets). With
    ``gamma = lam = 1``, ``A_t + V_t`` is the reward-to-go ``sum_{s >= t} r_s``.
    """
    rewards, values = rewards * mask, values * mask
    steps = rewards.shape[1]
    advantages = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(steps)):  # a loop over T tokens: the recursion runs backwards in time
        next_value = values[:, t + 1] if t + 1 < steps else torch.zeros_like(running)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        running = delta + gamma * lam * running
        advantages[:, t] = running
    advantages = advantages * mask
    return advantages, (advantages + values) * mask


def whiten(values: torch.Tensor, mask: torch.Tensor, *, shift_mean: bool = True) -> torch.Tensor:
    """``(x - mean) / std`` over the masked entries (sample std), 0 outside the mask; ``shift_mean=False`` keeps the mean."""
    mean = masked_mean(values, mask)
    count = mask.sum()
    var = (((values - mean) ** 2) * mask).sum() / (count - 1).clamp(min=1.0)
    out = (values - mean) * torch.rsqrt(var + WHITEN_EPS)
    if not shift_mean:
        out = out + mean
    return out * mask


def clipped_policy_loss(
    logps: torch.Tensor, old_logps: torch.Tensor, advantages: torch.Tensor, epsilon: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token ``max(-A w, -A clip(w, 1 - eps, 1 + eps))`` with ``w = exp(logp - logp_old)``, and where the clipped term won.

    ``advantages`` is per token ``[N, T]`` (GAE), unlike GRPO's one per completion. The second tensor
    is 1 where the clipped term is the larger loss (its gradient is 0 there): the clip fraction.
    """
    ratio = torch.exp(logps - old_logps)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1 - epsilon, 1 + epsilon)
    return torch.max(unclipped, clipped), (clipped > unclipped).float()


def clipped_value_loss(
    values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, cliprange: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token ``0.5 x max((V - R)^2, (V_clip - R)^2)`` with ``V_clip = V_old + clip(V - V_old, -c, c)``, and where the clipped term won."""
    clipped_values = old_values + torch.clamp(values - old_values, -cliprange, cliprange)
    unclipped = (values - returns) ** 2
    clipped = (clipped_values - returns) ** 2
    return 0.5 * torch.max(unclipped, clipped), (clipped > unclipped).float()
