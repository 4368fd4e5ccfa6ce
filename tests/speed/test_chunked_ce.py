"""The fused, chunked head + cross-entropy equals full logits + F.cross_entropy: loss and gradients."""

from __future__ import annotations

import pytest
import torch

from tuneforge.data.render import IGNORE_INDEX
from tuneforge.objectives.chunked_ce import (
    linear_cross_entropy,
    reference_linear_cross_entropy,
)


def _inputs(n=37, d=16, vocab=101, seed=0):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(n, d, generator=g, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(vocab, d, generator=g, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(0, vocab, (n,), generator=g)
    targets[::5] = IGNORE_INDEX
    return hidden, weight, targets


@pytest.mark.parametrize("chunk", [1, 8, 37, 1000])
def test_loss_and_gradients_equal_reference(chunk):
    hidden, weight, targets = _inputs()
    ref = reference_linear_cross_entropy(hidden, weight, targets)
    gh_ref, gw_ref = torch.autograd.grad(ref * 0.7, (hidden, weight))
    out = linear_cross_entropy(hidden, weight, targets, chunk_rows=chunk)
    gh, gw = torch.autograd.grad(
        out * 0.7, (hidden, weight)
    )  # a non-unit upstream gradient is scaled through
    assert torch.allclose(out, ref, atol=1e-8, rtol=1e-8)
    assert torch.allclose(gh, gh_ref, atol=1e-8)
    assert torch.allclose(gw, gw_ref, atol=1e-8)


def test_uniform_logits_give_log_vocab():
    hidden = torch.zeros(4, 8)
    weight = torch.randn(50, 8)
    out = linear_cross_entropy(hidden, weight, torch.tensor([0, 1, 2, 3]), chunk_rows=3)
    assert torch.isclose(out, torch.tensor(4 * torch.log(torch.tensor(50.0)).item()))


def test_frozen_head_gets_no_gradient_and_no_grad_mode_works():
    hidden, weight, targets = _inputs()
    weight = weight.detach()
    out = linear_cross_entropy(hidden, weight, targets, chunk_rows=5)
    (gh,) = torch.autograd.grad(out, (hidden,))
    gh_ref = torch.autograd.grad(
        reference_linear_cross_entropy(hidden, weight, targets), (hidden,)
    )[0]
    assert torch.allclose(gh, gh_ref, atol=1e-6)
    with torch.no_grad():
        assert torch.allclose(
            linear_cross_entropy(hidden, weight, targets),
            reference_linear_cross_entropy(hidden, weight, targets),
            atol=1e-6,
        )


def test_bf16_autocast_matches_autocast_reference():
    hidden, weight, targets = _inputs(n=64, d=32, vocab=300)
    hidden, weight = hidden.float().detach().requires_grad_(), weight.float().detach()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ref = reference_linear_cross_entropy(hidden, weight, targets)
        out = linear_cross_entropy(hidden, weight, targets, chunk_rows=16)
    assert torch.allclose(out, ref, rtol=1e-3)
    g = torch.autograd.grad(out, hidden)[0]
    g_ref = torch.autograd.grad(ref, hidden)[0]
    assert torch.allclose(g, g_ref, atol=2e-2, rtol=2e-2)


def test_bad_shapes_are_rejected():
    with pytest.raises(ValueError):
        linear_cross_entropy(
            torch.zeros(3, 4), torch.zeros(5, 4), torch.zeros(2, dtype=torch.long)
        )


@pytest.mark.parametrize("tie", [True, False])
def test_trained_positions_loss_with_chunks_equals_full_logits_full_finetune(tie):
    """Through a real (tiny) model with every weight trainable, the tied or untied head included."""
    from tests.helpers.tiny import tiny_llama
    from tuneforge.objectives.losses import causal_lm_loss, trained_positions_loss

    model = tiny_llama(320, tie=tie)
    ids = torch.randint(3, 320, (2, 9), generator=torch.Generator().manual_seed(1))
    labels = ids.clone()
    labels[:, :4] = IGNORE_INDEX
    full = causal_lm_loss(model(input_ids=ids, use_cache=False).logits, labels)
    g_full = torch.autograd.grad(full, list(model.parameters()))
    fused = trained_positions_loss(model, {"input_ids": ids}, labels, chunk_rows=3)
    g_fused = torch.autograd.grad(fused, list(model.parameters()))
    assert torch.allclose(fused, full, atol=1e-6)
    for (name, _), a, b in zip(model.named_parameters(), g_fused, g_full):
        assert torch.allclose(a, b, atol=1e-6), name
