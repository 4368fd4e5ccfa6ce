"""head_cast_once: the output head computes from a bf16 copy inside the context, bit-identical to autocast's
own per-call cast, and the original parameters (and a tie to the input embedding) come back on exit."""

from __future__ import annotations

import pytest
import torch
from peft import LoraConfig, get_peft_model
from torch import nn

from tests.helpers.tiny import tiny_llama
from tuneforge.models.autocast_head import head_cast_once

BF16 = torch.bfloat16
IDS = torch.tensor([[5, 17, 3, 44, 9, 12, 60, 7], [8, 8, 30, 2, 19, 41, 6, 11]])


def _logits(model) -> torch.Tensor:
    with torch.inference_mode(), torch.autocast("cpu", dtype=BF16):
        return model(input_ids=IDS, use_cache=False).logits


@pytest.mark.parametrize("tie", [True, False])
def test_logits_are_bit_identical_and_the_head_comes_back(tie: bool) -> None:
    model = tiny_llama(96, tie=tie, seed=3)
    weight = model.lm_head.weight
    assert (weight is model.model.embed_tokens.weight) == tie
    expected = _logits(model)
    with torch.inference_mode(), head_cast_once(model, BF16) as done:
        assert done
        assert model.lm_head.weight.dtype == BF16 and model.model.embed_tokens.weight.dtype == torch.float32
        got = _logits(model)
    assert torch.equal(got, expected)
    assert model.lm_head.weight is weight and weight.dtype == torch.float32
    assert (model.lm_head.weight is model.model.embed_tokens.weight) == tie


class _BiasHead(nn.Module):
    """A minimal model whose head has a bias: both are cast once, the result unchanged."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.head = nn.Linear(16, 40)

    def get_output_embeddings(self) -> nn.Module:
        return self.head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x)


def test_a_head_bias_is_cast_and_restored_too() -> None:
    model, x = _BiasHead(), torch.randn(3, 16)
    weight, bias = model.head.weight, model.head.bias
    with torch.no_grad(), torch.autocast("cpu", dtype=BF16):
        expected = model(x)
        with head_cast_once(model, BF16) as done:
            assert done and model.head.bias.dtype == BF16
            got = model(x)
    assert torch.equal(got, expected)
    assert model.head.weight is weight and model.head.bias is bias


def test_nothing_changes_where_a_copy_would_be_wrong_or_useless() -> None:
    model = tiny_llama(96, seed=3)
    weight = model.lm_head.weight
    with head_cast_once(model, None) as done:  # no autocast
        assert not done and model.lm_head.weight is weight
    assert torch.is_grad_enabled() and weight.requires_grad
    with head_cast_once(model, BF16) as done:  # the head could train inside: a copy would go stale
        assert not done and model.lm_head.weight is weight
    bf16 = tiny_llama(96, seed=3).to(BF16)  # already in the autocast dtype
    with torch.no_grad(), head_cast_once(bf16, BF16) as done:
        assert not done
    lora = get_peft_model(tiny_llama(96, tie=False, seed=3), LoraConfig(r=2, target_modules=["lm_head", "q_proj"]))
    with torch.no_grad(), head_cast_once(lora, BF16) as done:  # a peft head holds adapter weights
        assert not done


def test_the_head_comes_back_when_the_body_raises() -> None:
    model = tiny_llama(96, seed=3)
    weight = model.lm_head.weight
    with pytest.raises(RuntimeError, match="boom"), torch.no_grad(), head_cast_once(model, BF16):
        raise RuntimeError("boom")
    assert model.lm_head.weight is weight is model.model.embed_tokens.weight
