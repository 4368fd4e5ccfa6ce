"""NLFT's weight rules on hand-made probabilities against their closed forms, and its loss on a tiny model."""

from __future__ import annotations

import math

import pytest
import torch

from tests.helpers.tiny import tiny_llama, tiny_tokenizer
from tuneforge.config.nlft import NlftOptions
from tuneforge.data.records import ChatRecord, Message
from tuneforge.data.render import render_chat
from tuneforge.objectives.losses import causal_lm_loss
from tuneforge.objectives.nlft import (
    TokenWeights,
    correct_weights,
    incorrect_weights,
    nlft_loss,
    response_logprobs,
    token_weights,
    unlike_mask,
    weighted_token_loss,
)

OPT = NlftOptions()


def t(*xs: float) -> torch.Tensor:
    return torch.tensor(xs, dtype=torch.float64)


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def test_correct_response_boosts_confident_tokens_and_scales_the_rest():
    w = correct_weights(t(0.99, 0.96, 0.5, 0.95), OPT)
    expected = [1 + ((0.99 - 0.95) / 0.05) ** 5, 1 + ((0.96 - 0.95) / 0.05) ** 5, (0.5 / 0.95) ** 0.6, 1.0]  # 0.95 is not above the bar
    assert w.weight.tolist() == pytest.approx(expected)
    assert not w.unlike.any()


def test_unlike_mask_needs_both_ratios_and_the_floor():
    # p_crit vs 1.5 x p_base and 1.5 x p_ref, and p_crit > 0.01
    base, ref, crit = t(0.1, 0.1, 0.1, 0.004, 0.1), t(0.1, 0.2, 0.1, 0.004, 0.1), t(0.2, 0.2, 0.14, 0.009, 0.151)
    assert unlike_mask(base, ref, crit, OPT).tolist() == [True, False, False, False, True]


def test_incorrect_response_unlikelihood_scale_and_other_weights():
    base, ref, crit = t(0.1, 0.4, 0.3), t(0.1, 0.64, 0.3), t(0.5, 0.4, 0.3)
    opts = NlftOptions(unlike_share_cap=0.5)  # one flagged token of three: under the cap
    w = incorrect_weights(base, ref, crit, opts)
    assert w.unlike.tolist() == [True, False, False]
    assert w.unlike_scale[0].item() == pytest.approx(2 * sigmoid(0.5 / 0.1 - 1.5))
    assert w.weight.tolist() == pytest.approx([0.0, 0.64**0.5, 0.3**0.5])


def test_too_many_flagged_tokens_zero_the_other_weights():
    base, ref, crit = t(0.1, 0.4, 0.3), t(0.1, 0.64, 0.3), t(0.5, 0.4, 0.3)
    w = incorrect_weights(base, ref, crit, OPT)  # 1/3 flagged > 6 %
    assert w.weight.tolist() == [0.0, 0.0, 0.0]
    assert w.unlike_scale[0].item() == pytest.approx(2 * sigmoid(5 - 1.5))


def test_token_weights_pick_the_rule_by_verdict():
    base, ref, crit = t(0.1, 0.9), t(0.1, 0.99), t(0.5, 0.9)
    assert torch.equal(token_weights(base, ref, crit, True, OPT).weight, correct_weights(ref, OPT).weight)
    assert token_weights(base, ref, crit, False, OPT).unlike.tolist() == [True, False]


def test_weighted_token_loss_closed_form():
    p = t(0.2, 0.7, 0.9)
    w = TokenWeights(t(2.0, 0.5, 0.0), torch.tensor([False, False, True]), t(0.0, 0.0, 1.3))
    expected = -2.0 * math.log(0.2) - 0.5 * math.log(0.7) - 1.3 * math.log(1 - 0.9) - 0.25 * sum(map(math.log, (0.2, 0.7, 0.9)))
    assert weighted_token_loss(p.log(), w, sft_weight=0.25).item() == pytest.approx(expected)


def _batch():
    tok = tiny_tokenizer()
    model = tiny_llama(len(tok)).double()
    rows = [
        ChatRecord((Message("user", "What is 2+3?"), Message("assistant", "The answer is 5.")), "a:1"),
        ChatRecord((Message("user", "Name a colour."), Message("assistant", "Blue")), "a:2"),
    ]
    views = [render_chat(tok, r) for r in rows]
    n = max(len(v.input_ids) for v in views)
    ids = torch.tensor([v.input_ids + [0] * (n - len(v.input_ids)) for v in views])
    labels = torch.tensor([v.labels + [-100] * (n - len(v.labels)) for v in views])
    mask = (torch.arange(n)[None] < torch.tensor([len(v.input_ids) for v in views])[:, None]).long()
    logits = model(input_ids=ids, attention_mask=mask).logits
    return logits, labels


def test_all_weights_one_and_no_unlikelihood_is_sft_loss_exactly():
    logits, labels = _batch()
    logp = response_logprobs(logits, labels)
    ones = [TokenWeights(torch.ones_like(lp), torch.zeros_like(lp, dtype=torch.bool), torch.zeros_like(lp)) for lp in logp]
    total = sum(weighted_token_loss(lp, w, sft_weight=0.0) for lp, w in zip(logp, ones))
    n = sum(lp.numel() for lp in logp)
    assert (total / n).item() == pytest.approx(causal_lm_loss(logits, labels).item(), rel=1e-6)  # causal_lm_loss computes in fp32
    # the loss entry point: sft term only (a correct response with below_power 0 and no boost has weight 1 too)
    only_sft = NlftOptions(sft_weight=1.0, below_power=0.0, confident=0.999999)
    zero_weights = nlft_loss(logp, [lp.detach().exp() * 0 for lp in logp], [lp.detach().exp() * 0 for lp in logp], [True, True], only_sft)
    assert zero_weights.item() == pytest.approx(2 * causal_lm_loss(logits, labels).item(), rel=1e-6)


def test_nlft_loss_equals_the_hand_computed_weighted_sum():
    logits, labels = _batch()
    logp = response_logprobs(logits, labels)
    torch.manual_seed(1)
    p_ref = [torch.rand_like(lp) for lp in logp]
    p_crit = [torch.rand_like(lp) for lp in logp]
    opts = NlftOptions(unlike_share_cap=1.0, unlike_ratio=1.0001, loss_scale=10.0)
    loss = nlft_loss(logp, p_ref, p_crit, [True, False], opts, num_items_in_batch=torch.tensor(40))
    by_hand = 0.0
    for i, ok in enumerate([True, False]):
        for j in range(logp[i].numel()):
            p, r, c = logp[i][j].exp().item(), p_ref[i][j].item(), p_crit[i][j].item()
            if ok:
                w = 1 + ((r - 0.95) / 0.05) ** 5 if r > 0.95 else (r / 0.95) ** 0.6
                by_hand += -w * math.log(p)
            elif c > 1.0001 * p and c > 1.0001 * r and c > 0.01:
                by_hand += -2 * sigmoid(c / p - 1.5) * math.log(1 - p)
            else:
                by_hand += -(r**0.5) * math.log(p)
            by_hand += -math.log(p)  # sft_weight 1
    assert loss.item() == pytest.approx(10.0 * by_hand / 40, rel=1e-6)
    loss.backward()  # gradients flow through the base prompt's log-probs


def test_response_logprobs_follow_the_labels():
    logits = torch.log_softmax(torch.randn(1, 4, 6, dtype=torch.float64), -1)
    labels = torch.tensor([[-100, 3, -100, 5]])
    (lp,) = response_logprobs(logits, labels)
    assert lp.tolist() == pytest.approx([logits[0, 0, 3].item(), logits[0, 2, 5].item()])
