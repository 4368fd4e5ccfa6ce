"""rsLoRA and PiSSA against their closed forms, so neither can silently train as plain LoRA.

Plain LoRA would pass the contract tests of both (same parameter count, identity at init); these check
what is different: rsLoRA's scale is alpha/sqrt(r) (plain: alpha/r), and PiSSA's A, B are the top-r
singular directions of W with W replaced by its residual. peft's PiSSA init (``LoraLayer.pissa_init``,
peft 0.21): with W = U S Vh and s the LoRA scale, A = sqrt(S_r / s) Vh_r, B = U_r sqrt(S_r / s), and the
base weight becomes W - s B A (so s B A = U_r S_r Vh_r, and the model is unchanged at init).
"""

from __future__ import annotations

import math

import pytest
import torch

from tests.helpers.tiny import tiny_llama
from tests.methods.helpers import HIDDEN, VOCAB, build

R, ALPHA = 4, 8.0  # alpha/r = 2, alpha/sqrt(r) = 4: a fallback cannot match by accident
TARGETS = ["model.layers.0.self_attn.q_proj", "model.layers.1.mlp.down_proj"]


def lora(method_type: str) -> dict:
    return {"type": method_type, "lora": {"r": R, "alpha": ALPHA, "dropout": 0.0, "target_modules": ["q_proj", "down_proj"]}}


@pytest.mark.parametrize(("method_type", "scale"), [("lora", ALPHA / R), ("rslora", ALPHA / math.sqrt(R))])
def test_lora_scale_is_alpha_over_r_and_rslora_alpha_over_sqrt_r(method_type, scale):
    model = build(tiny_llama(VOCAB), lora(method_type))
    layer = model.get_base_model().get_submodule(TARGETS[0])
    assert layer.scaling["default"] == pytest.approx(scale)
    # and the forward applies it: with a non-zero B the layer adds scale * B A x to the base output
    a, b = layer.lora_A["default"].weight, layer.lora_B["default"].weight
    with torch.no_grad():
        b.normal_(generator=torch.Generator().manual_seed(0))
        x = torch.randn(3, HIDDEN, generator=torch.Generator().manual_seed(1))
        torch.testing.assert_close(layer(x), layer.base_layer(x) + scale * x @ a.T @ b.T, atol=1e-5, rtol=1e-5)


def test_pissa_starts_from_the_top_singular_vectors_and_keeps_the_residual():
    base = tiny_llama(VOCAB)
    original = {name: base.get_submodule(name).weight.detach().clone() for name in TARGETS}
    model = build(base, lora("pissa"))
    scale = ALPHA / R
    for name, w in original.items():
        layer = model.get_base_model().get_submodule(name)
        a, b = layer.lora_A["default"].weight.detach(), layer.lora_B["default"].weight.detach()
        u, s, vh = torch.linalg.svd(w, full_matrices=False)
        root = torch.sqrt(s[:R] / scale)
        a_ref, b_ref = root[:, None] * vh[:R], u[:, :R] * root[None, :]
        # each singular pair (u_i, v_i) is defined up to a common sign; align it, then compare exactly
        sign = torch.sign((a * a_ref).sum(dim=1))
        assert torch.all(sign != 0), name
        torch.testing.assert_close(a * sign[:, None], a_ref, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(b * sign[None, :], b_ref, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(scale * b @ a, (u[:, :R] * s[:R]) @ vh[:R], atol=1e-5, rtol=1e-4)
        residual = layer.base_layer.weight.detach()
        torch.testing.assert_close(residual, w - scale * b @ a, atol=1e-6, rtol=0)
        assert not torch.allclose(residual, w, atol=1e-3)  # the base weight really was replaced
