"""The GRPO family's loss pieces as plain tensor functions (grpo, Dr.GRPO, DAPO, GSPO, rloo).

Each is small and tested against a closed form in tests/objectives/test_grpo_loss.py; the trainer
(:mod:`tuneforge.train.grpo_trainer`) only wires them together. Conventions:

- Rewards are a flat tensor ``[groups * G]`` whose completions of one prompt are adjacent.
- Per-token tensors are ``[completions, T]`` with a 0/1 float ``mask`` of the completion tokens
  that count (the tokens up to and including the first end token; truncated completions are all
  ones, or all zeros under ``mask_truncated``).
- Standard deviations are *sample* standard deviations (divide by n - 1, torch's default and TRL's);
  a standard deviation below :data:`ZERO_STD` counts as zero variance and gives advantage 0.
"""

from __future__ import annotations

import torch

ZERO_STD = 1e-6  # below this a group's rewards count as all equal: no signal, advantage 0
LOSS_TYPES = ("grpo", "bnpo", "dr_grpo", "dapo")


def _groups(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    if rewards.ndim != 1 or rewards.numel() % group_size:
        raise ValueError(f"rewards must be a flat tensor of whole groups of {group_size}, got shape {tuple(rewards.shape)}")
    return rewards.view(-1, group_size)


def group_advantages(rewards: torch.Tensor, group_size: int, scale: str = "group") -> torch.Tensor:
    """GRPO's advantage: (r - mean of its group) / std, with std the group's (``group``), the batch's (``batch``) or 1 (``none``).

    Rewards [1, 1, 1, 0] (one group, ``group``): mean 0.75, sample std 0.5, advantages [0.5, 0.5, 0.5, -1.5].
    A group whose rewards are all equal gets 0 whatever the scaling.
    """
    grouped = _groups(rewards.float(), group_size)
    centred = grouped - grouped.mean(dim=1, keepdim=True)
    flat_zero = zero_variance_groups(rewards, group_size).repeat_interleave(group_size)
    if scale == "group":
        std = grouped.std(dim=1, keepdim=True).expand_as(grouped).reshape(-1)
    elif scale == "batch":
        std = rewards.float().std().expand(rewards.numel()) if rewards.numel() > 1 else torch.zeros(rewards.numel())
    elif scale == "none":
        std = torch.ones(rewards.numel())
    else:
        raise ValueError(f"unknown scale_rewards {scale!r}; use group, batch or none")
    adv = centred.reshape(-1) / std.clamp(min=ZERO_STD)
    return torch.where(flat_zero | (std < ZERO_STD), torch.zeros_like(adv), adv)


def rloo_advantages(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """RLOO's advantage: r_i minus the mean of the other G - 1 rewards of its prompt (unbiased baseline).

    Rewards [1, 1, 1, 0]: [1/3, 1/3, 1/3, -1]. Equals G / (G - 1) times (r - group mean).
    """
    grouped = _groups(rewards.float(), group_size)
    others = (grouped.sum(dim=1, keepdim=True) - grouped) / (group_size - 1)
    return (grouped - others).reshape(-1)


def zero_variance_groups(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """``[groups]`` bool: True where every completion of the prompt got the same reward (nothing to learn)."""
    grouped = _groups(rewards.float(), group_size)
    spread = grouped.max(dim=1).values - grouped.min(dim=1).values
    return spread < ZERO_STD


def overlong_penalty(lengths: torch.Tensor, max_length: int, buffer: int, penalty: float = 1.0) -> torch.Tensor:
    """DAPO's soft overlong punishment, added to the reward: 0 up to ``max_length - buffer`` tokens, then
    falling linearly to ``-penalty`` at ``max_length`` (and ``-penalty`` beyond it). ``buffer=0``: all zeros."""
    lengths = lengths.float()
    if buffer <= 0:
        return torch.zeros_like(lengths)
    start = max_length - buffer
    ramp = (start - lengths) / buffer * penalty
    return torch.where(lengths <= start, torch.zeros_like(lengths), torch.where(lengths <= max_length, ramp, torch.full_like(lengths, -penalty)))


def log_importance_weights(logps: torch.Tensor, old_logps: torch.Tensor, mask: torch.Tensor, level: str = "token") -> torch.Tensor:
    """log pi/pi_old per token (``token``), or per completion as the mean token log-ratio (``sequence``, GSPO: ``[N, 1]``)."""
    log_ratio = logps - old_logps
    if level == "token":
        return log_ratio
    if level == "sequence":
        return ((log_ratio * mask).sum(dim=-1) / mask.sum(dim=-1).clamp(min=1.0)).unsqueeze(-1)
    raise ValueError(f"unknown importance_sampling {level!r}; use token or sequence")


def k3_kl(logps: torch.Tensor, ref_logps: torch.Tensor) -> torch.Tensor:
    """Schulman's k3 estimate of KL(pi || pi_ref) per token: exp(d) - d - 1 with d = ref - logp (>= 0, 0 when equal)."""
    d = ref_logps - logps
    return torch.exp(d) - d - 1


def clipped_surrogate(
    log_weights: torch.Tensor, advantages: torch.Tensor, epsilon_low: float, epsilon_high: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """PPO's clipped objective as a per-token loss, -min(w A, clip(w, 1 - eps_low, 1 + eps_high) A), and where it clipped.

    ``log_weights`` is ``[N, T]`` (token) or ``[N, 1]`` (sequence); ``advantages`` is ``[N]``.
    The second tensor is 1 where the clipped term was the smaller one (no gradient there).
    """
    ratio = torch.exp(log_weights)
    adv = advantages.unsqueeze(-1)
    unclipped = ratio * adv
    clipped = torch.clamp(ratio, 1 - epsilon_low, 1 + epsilon_high) * adv
    return -torch.min(unclipped, clipped), (clipped < unclipped).float()


def aggregate(
    per_token: torch.Tensor,
    mask: torch.Tensor,
    loss_type: str,
    *,
    max_completion_length: int,
    step_tokens: float | None = None,
) -> torch.Tensor:
    """Reduce a per-token loss to the scalar the optimizer sees; the denominators differ:

    - ``grpo``: each completion's token mean, then the mean over completions (long answers weigh less per token);
    - ``bnpo``: sum over the micro-batch's masked tokens / their count;
    - ``dr_grpo``: sum / (completions x ``max_completion_length``), a constant (Dr.GRPO: no length bias);
    - ``dapo``: sum / ``step_tokens``, the masked tokens of the whole optimizer step over all micro-batches
      (equals bnpo with one micro-batch per step).
    """
    masked = per_token * mask
    if loss_type == "grpo":
        return (masked.sum(dim=-1) / mask.sum(dim=-1).clamp(min=1.0)).mean()
    if loss_type == "bnpo":
        return masked.sum() / mask.sum().clamp(min=1.0)
    if loss_type == "dr_grpo":
        return masked.sum() / (per_token.shape[0] * max_completion_length)
    if loss_type == "dapo":
        tokens = float(mask.sum()) if step_tokens is None else step_tokens
        return masked.sum() / max(tokens, 1.0)
    raise ValueError(f"unknown loss_type {loss_type!r}; use one of {', '.join(LOSS_TYPES)}")


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` over the tokens where ``mask`` is 1 (0 when there are none); for logging."""
    if values.shape != mask.shape:
        values = values.expand_as(mask)
    return (values * mask).sum() / mask.sum().clamp(min=1.0)
