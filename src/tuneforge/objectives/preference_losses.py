"""Preference losses as small pure functions of sequence log-probabilities.

Why our own and not TRL's: in TRL 1.16 the DPO-family and KTO losses live inside the private
``DPOTrainer._compute_loss`` / ``KTOTrainer._compute_loss`` (they need TRL's whole trainer, data
pipeline and fused LM-head forward), and ORPO / CPO-SimPO exist only under ``trl.experimental``.
One trainer path (:mod:`tuneforge.train.preference_trainer`) serves every objective here; each
function returns per-example losses (mean them for the batch) and is tested against its closed form
at init and against TRL's public loss methods or a hand-written reference (tests/preference).

Conventions (the same as TRL 1.16 so that numbers carry over):

- ``*_logps`` are summed log-probs of the completion tokens; ``*_lengths`` their token counts.
- DPO-family "rewards" are ``beta * (policy - reference)`` log-ratios.
- IPO uses per-token (length-normalised) log-ratios, loss ``(delta - 1/(2 beta))**2``: ``1/(4 beta**2)`` at init.
- SimPO and ORPO use the *average* per-token log-prob (no reference model).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

DPO_LOSSES = ("sigmoid", "ipo", "hinge", "robust", "conservative")


def dpo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    *,
    beta: float,
    loss_type: str = "sigmoid",
    label_smoothing: float = 0.0,
    chosen_lengths: torch.Tensor | None = None,
    rejected_lengths: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-pair DPO-family loss.

    - sigmoid: ``-log sigmoid(beta * delta)`` (DPO); ``ln 2`` when policy = reference.
    - conservative: cDPO, ``-(1-eps) log sigmoid(beta delta) - eps log sigmoid(-beta delta)``; labels flipped with prob eps.
    - robust: rDPO, the unbiased estimate under flip rate eps, ``[(1-eps) l(delta) - eps l(-delta)] / (1 - 2 eps)``.
    - hinge: SLiC, ``relu(1 - beta * delta)``.
    - ipo: ``(delta_avg - 1/(2 beta))**2`` with per-token log-ratios (needs lengths).
    """
    chosen_ratio = policy_chosen_logps - ref_chosen_logps
    rejected_ratio = policy_rejected_logps - ref_rejected_logps
    delta = chosen_ratio - rejected_ratio
    if loss_type == "sigmoid":
        return -F.logsigmoid(beta * delta)
    if loss_type == "conservative":
        eps = label_smoothing
        return -(1 - eps) * F.logsigmoid(beta * delta) - eps * F.logsigmoid(
            -beta * delta
        )
    if loss_type == "robust":
        eps = label_smoothing
        return (
            -(1 - eps) * F.logsigmoid(beta * delta) + eps * F.logsigmoid(-beta * delta)
        ) / (1 - 2 * eps)
    if loss_type == "hinge":
        return torch.relu(1 - beta * delta)
    if loss_type == "ipo":
        if chosen_lengths is None or rejected_lengths is None:
            raise ValueError(
                "the ipo loss needs chosen_lengths and rejected_lengths (it uses per-token log-ratios)"
            )
        avg_delta = chosen_ratio / chosen_lengths.clamp(
            min=1
        ) - rejected_ratio / rejected_lengths.clamp(min=1)
        return (avg_delta - 1 / (2 * beta)) ** 2
    raise ValueError(
        f"unknown dpo loss {loss_type!r}; use one of {', '.join(DPO_LOSSES)}"
    )


def simpo_loss(
    chosen_avg_logps: torch.Tensor,
    rejected_avg_logps: torch.Tensor,
    *,
    beta: float,
    gamma: float,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """SimPO: ``-log sigmoid(beta * (avg_c - avg_r) - gamma)``; ``log(1 + e^gamma)`` at equal averages.

    Rewards are the length-normalised log-probs scaled by beta; gamma is the target margin. No
    reference model. Label smoothing as in cDPO.
    """
    z = beta * (chosen_avg_logps - rejected_avg_logps) - gamma
    return -(1 - label_smoothing) * F.logsigmoid(z) - label_smoothing * F.logsigmoid(-z)


def log1mexp(x: torch.Tensor) -> torch.Tensor:
    """``log(1 - exp(x))`` for x < 0, accurate at both ends (Maechler 2012)."""
    return torch.where(
        x > -0.6931471805599453, torch.log(-torch.expm1(x)), torch.log1p(-torch.exp(x))
    )


def orpo_log_odds(
    chosen_avg_logps: torch.Tensor, rejected_avg_logps: torch.Tensor
) -> torch.Tensor:
    """``log odds(chosen) - log odds(rejected)`` with ``odds(p) = p / (1 - p)`` and p the per-token average probability."""
    dtype = torch.promote_types(
        chosen_avg_logps.dtype, torch.float32
    )  # at least fp32: log1mexp near 0 needs it
    c, r = chosen_avg_logps.to(dtype), rejected_avg_logps.to(dtype)
    return (c - r) - (log1mexp(c) - log1mexp(r))


def orpo_odds_ratio_loss(
    chosen_avg_logps: torch.Tensor, rejected_avg_logps: torch.Tensor
) -> torch.Tensor:
    """ORPO's odds-ratio term ``-log sigmoid(log odds ratio)``: ``ln 2`` when the two averages are equal.

    The full ORPO loss is ``NLL(chosen) + lambda * this`` (see :func:`orpo_loss`).
    """
    return -F.logsigmoid(orpo_log_odds(chosen_avg_logps, rejected_avg_logps))


def orpo_loss(
    chosen_nll: torch.Tensor,
    chosen_avg_logps: torch.Tensor,
    rejected_avg_logps: torch.Tensor,
    *,
    orpo_lambda: float,
) -> torch.Tensor:
    """Per-pair ORPO loss: the chosen answer's mean token NLL plus lambda times the odds-ratio term."""
    return chosen_nll + orpo_lambda * orpo_odds_ratio_loss(
        chosen_avg_logps, rejected_avg_logps
    )


def kto_loss(
    policy_logps: torch.Tensor,
    ref_logps: torch.Tensor,
    desirable: torch.Tensor,
    kl: torch.Tensor,
    *,
    beta: float,
    desirable_weight: float = 1.0,
    undesirable_weight: float = 1.0,
) -> torch.Tensor:
    """Per-example KTO loss (Ethayarajh et al. 2024, eq. 7).

    desirable:   ``w_d * (1 - sigmoid(beta * (log-ratio - z0)))``
    undesirable: ``w_u * (1 - sigmoid(beta * (z0 - log-ratio)))``
    with ``z0`` the batch KL estimate (detached, clamped at 0). Each term is 0.5 at init.
    """
    ratio = policy_logps - ref_logps
    z0 = kl.detach().clamp(min=0)
    good = 1 - torch.sigmoid(beta * (ratio - z0))
    bad = 1 - torch.sigmoid(beta * (z0 - ratio))
    return torch.where(
        desirable.bool(), desirable_weight * good, undesirable_weight * bad
    )


def kto_kl_estimate(
    policy_kl_logps: torch.Tensor, ref_kl_logps: torch.Tensor
) -> torch.Tensor:
    """KTO's reference point z0: mean log-ratio on mismatched (prompt, other completion) pairs, clamped at 0."""
    return (policy_kl_logps - ref_kl_logps).mean().detach().clamp(min=0)


def bradley_terry_loss(
    chosen_rewards: torch.Tensor, rejected_rewards: torch.Tensor, *, margin: float = 0.0
) -> torch.Tensor:
    """Reward-model loss ``-log sigmoid(r_c - r_r - margin)``; ``ln 2`` when both rewards are equal and margin is 0."""
    return -F.logsigmoid(chosen_rewards - rejected_rewards - margin)


def pair_accuracy(
    chosen_scores: torch.Tensor, rejected_scores: torch.Tensor
) -> torch.Tensor:
    """Fraction of pairs the model ranks right (ties count as wrong)."""
    return (chosen_scores > rejected_scores).float().mean()
