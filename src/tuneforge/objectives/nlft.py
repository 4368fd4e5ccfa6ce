"""NLFT's token weights and loss (Natural Language Fine-Tuning, arXiv 2412.20382).

The same response y is scored under three prompts: the question alone (``base``, the only one
gradients flow through, as the model is used at inference), the question with the reference answer
(``ref``) and the question with a judge's critique of y (``crit``). From the per-token probabilities
of y's tokens under the three, NLFT weights each token:

- a response judged **correct**: tokens the reference makes near-certain (p_ref > confident) are
  boosted, w = 1 + ((p_ref - confident) / (1 - confident)) ** boost_power; the others get
  w = (p_ref / confident) ** below_power;
- a response judged **incorrect**: tokens the critique makes more likely than both other prompts do
  (p_crit > ratio * p_base, p_crit > ratio * p_ref, p_crit > min_prob) are the error; they get the
  unlikelihood term -s_t log(1 - p_base) with s_t = 2 sigmoid(p_crit / p_base - threshold); the
  others keep -w log p_base with w = p_ref ** incorrect_power, or w = 0 when more than
  ``unlike_share_cap`` of the response is flagged (the response is too wrong to learn its rest).

Weights are computed without gradients (the paper detaches them too). The loss is the weighted sum
plus ``sft_weight`` times the plain SFT sum, over the trained tokens of the accumulated batch, times
``loss_scale``; tuneforge normalises by tokens like every other loss (:mod:`.losses`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tuneforge.config.nlft import NlftOptions
from tuneforge.data.render import IGNORE_INDEX

EPS = 1e-5  # the public code's floor for a probability before its log


@dataclass
class TokenWeights:
    """Per-token weights of one response: ``weight`` on -log p, ``unlike_scale`` on -log(1 - p) where ``unlike``."""

    weight: torch.Tensor
    unlike: torch.Tensor
    unlike_scale: torch.Tensor


def correct_weights(p_ref: torch.Tensor, options: NlftOptions) -> TokenWeights:
    """Weights of a response judged correct: boost the tokens the reference makes near-certain."""
    c = options.confident
    boosted = 1 + ((p_ref - c).clamp(min=0) / (1 - c)) ** options.boost_power
    weight = torch.where(p_ref > c, boosted, (p_ref / c) ** options.below_power)
    none = torch.zeros_like(p_ref, dtype=torch.bool)
    return TokenWeights(weight, none, torch.zeros_like(p_ref))


def unlike_mask(p_base: torch.Tensor, p_ref: torch.Tensor, p_crit: torch.Tensor, options: NlftOptions) -> torch.Tensor:
    """Tokens the critique makes more likely than both the question alone and the reference do."""
    k = options.unlike_ratio
    return (p_crit > k * p_base) & (p_crit > k * p_ref) & (p_crit > options.unlike_min_prob)


def incorrect_weights(p_base: torch.Tensor, p_ref: torch.Tensor, p_crit: torch.Tensor, options: NlftOptions) -> TokenWeights:
    """Weights of a response judged incorrect: unlikelihood on the flagged tokens, p_ref ** power on the rest."""
    unlike = unlike_mask(p_base, p_ref, p_crit, options)
    ratio = p_crit / p_base.clamp(min=EPS)
    scale = 2 * torch.sigmoid(ratio - options.threshold)
    weight = p_ref**options.incorrect_power
    if unlike.numel() and unlike.float().mean() > options.unlike_share_cap:
        weight = torch.zeros_like(weight)
    weight = torch.where(unlike, torch.zeros_like(weight), weight)
    return TokenWeights(weight, unlike, torch.where(unlike, scale, torch.zeros_like(scale)))


def token_weights(p_base: torch.Tensor, p_ref: torch.Tensor, p_crit: torch.Tensor, correct: bool, options: NlftOptions) -> TokenWeights:
    """The weights of one response's tokens (1-D probability tensors of equal length, no gradients)."""
    with torch.no_grad():
        if correct:
            return correct_weights(p_ref, options)
        return incorrect_weights(p_base, p_ref, p_crit, options)


def weighted_token_loss(logp_base: torch.Tensor, weights: TokenWeights, sft_weight: float) -> torch.Tensor:
    """Sum over one response's tokens of w * -log p + s * -log(1 - p) (flagged) + sft_weight * -log p."""
    p = logp_base.exp()
    unlikely = -torch.log((1 - p).clamp(min=EPS))
    term = torch.where(weights.unlike, weights.unlike_scale * unlikely, -weights.weight * logp_base)
    return (term - sft_weight * logp_base).sum()


def response_logprobs(logits: torch.Tensor, labels: torch.Tensor) -> list[torch.Tensor]:
    """Per row, the log-probabilities of its trained tokens in order (position t predicts labels[t+1])."""
    targets = labels[:, 1:].to(logits.device)
    keep = targets.ne(IGNORE_INDEX)
    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    picked = logp.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return [picked[i][keep[i]] for i in range(picked.size(0))]


def nlft_loss(
    logp_base: list[torch.Tensor],
    p_ref: list[torch.Tensor],
    p_crit: list[torch.Tensor],
    correct: list[bool],
    options: NlftOptions,
    num_items_in_batch: int | torch.Tensor | None = None,
) -> torch.Tensor:
    """The NLFT loss of a micro-batch, normalised by the trained tokens of the accumulated batch."""
    total = logp_base[0].new_zeros(())
    for lp, pr, pc, ok in zip(logp_base, p_ref, p_crit, correct, strict=True):
        weights = token_weights(lp.detach().exp(), pr, pc, ok, options)
        total = total + weighted_token_loss(lp, weights, options.sft_weight)
    count = num_items_in_batch if num_items_in_batch is not None else sum(lp.numel() for lp in logp_base)
    if torch.is_tensor(count):
        count = count.to(total.device)
    return options.loss_scale * total / count
