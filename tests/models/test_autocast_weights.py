"""weights_cast_once: plain linear layers compute from bf16 copies inside the context, bit-identical to
autocast's own per-call casts, and the original parameters (and a tie to the input embedding) come back
on exit."""

from __future__ import annotations

import pytest
import torch
from peft import LoraConfig, get_peft_model
from torch import nn

from tests.helpers.tiny import tiny_llama
from tuneforge.models import autocast_weights
from tuneforge.models.autocast_weights import castable_linears, weights_cast_once
from tuneforge.models.free_memory import free_memory_bytes

BF16 = torch.bfloat16
IDS = torch.tensor([[5, 17, 3, 44, 9, 12, 60, 7], [8, 8, 30, 2, 19, 41, 6, 11]])


def _logits(model) -> torch.Tensor:
    with torch.inference_mode(), torch.autocast("cpu", dtype=BF16):
        return model(input_ids=IDS, use_cache=False).logits


def _lora(dora: bool = False):
    model = get_peft_model(tiny_llama(96, tie=True, seed=4), LoraConfig(r=2, target_modules=["q_proj", "v_proj", "down_proj"], use_dora=dora))
    for name, p in model.named_parameters():  # a non-identity adapter, so its path is compared too
        if "lora_B" in name:
            nn.init.normal_(p, std=0.1)
    return model.eval()


@pytest.mark.parametrize("tie", [True, False])
def test_logits_are_bit_identical_and_every_weight_comes_back(tie: bool) -> None:
    model = tiny_llama(96, tie=tie, seed=3)
    before = {name: p for name, p in model.named_parameters(remove_duplicate=False)}
    expected = _logits(model)
    with torch.inference_mode(), weights_cast_once(model, BF16) as copied:
        # 2 layers x 7 linears + the head; a tied head is copied, the embedding it shares stays fp32
        assert copied == sum(m.weight.numel() * 2 for m in model.modules() if type(m) is nn.Linear)
        assert model.lm_head.weight.dtype == BF16 and model.model.layers[1].mlp.up_proj.weight.dtype == BF16
        assert model.model.embed_tokens.weight.dtype == torch.float32
        got = _logits(model)
    assert torch.equal(got, expected)
    assert all(p is before[name] for name, p in model.named_parameters(remove_duplicate=False))
    assert (model.lm_head.weight is model.model.embed_tokens.weight) == tie


def test_a_plain_lora_model_copies_base_and_adapter_layers_and_answers_the_same() -> None:
    model = _lora()
    expected = _logits(model)
    base = model.get_base_model()
    q = base.model.layers[0].self_attn.q_proj
    with torch.inference_mode(), weights_cast_once(model, BF16) as copied:
        assert copied > 0
        assert q.base_layer.weight.dtype == BF16 and q.lora_A["default"].weight.dtype == BF16 and q.lora_B["default"].weight.dtype == BF16
        got = _logits(model)
    assert torch.equal(got, expected)
    assert q.base_layer.weight.dtype == torch.float32 and q.lora_B["default"].weight.dtype == torch.float32


def test_dora_keeps_its_layers_and_copies_only_the_head() -> None:
    model = _lora(dora=True)
    base = model.get_base_model()
    assert castable_linears(model) == [base.lm_head]
    expected = _logits(model)
    with torch.inference_mode(), weights_cast_once(model, BF16):
        assert base.model.layers[0].self_attn.q_proj.base_layer.weight.dtype == torch.float32
        assert base.lm_head.weight.dtype == BF16
        got = _logits(model)
    assert torch.equal(got, expected)


def test_too_little_memory_for_the_copies_falls_back_to_the_head(monkeypatch) -> None:
    model = tiny_llama(96, tie=True, seed=3)
    assert free_memory_bytes(torch.device("cpu")) > 0  # read from /proc/meminfo here
    monkeypatch.setattr(autocast_weights, "free_memory_bytes", lambda device: 4 * 96 * 64 * 2)  # room for the head only
    with torch.inference_mode(), weights_cast_once(model, BF16) as copied:
        assert copied == 96 * 64 * 2
        assert model.lm_head.weight.dtype == BF16 and model.model.layers[0].mlp.up_proj.weight.dtype == torch.float32


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


def test_a_bias_is_cast_and_restored_too() -> None:
    model, x = _BiasHead(), torch.randn(3, 16)
    weight, bias = model.head.weight, model.head.bias
    with torch.no_grad(), torch.autocast("cpu", dtype=BF16):
        expected = model(x)
        with weights_cast_once(model, BF16, scope="head") as copied:
            assert copied == (40 * 16 + 40) * 2 and model.head.bias.dtype == BF16
            got = model(x)
    assert torch.equal(got, expected)
    assert model.head.weight is weight and model.head.bias is bias


def test_a_weight_shared_by_two_layers_is_copied_once_and_shared_inside() -> None:
    model = nn.Sequential(nn.Linear(8, 8, bias=False), nn.Linear(8, 8, bias=False))
    model[1].weight = model[0].weight
    model.requires_grad_(False)
    with weights_cast_once(model, BF16) as copied:
        assert copied == 8 * 8 * 2 and model[0].weight is model[1].weight
    assert model[0].weight is model[1].weight and model[0].weight.dtype == torch.float32


def test_nothing_changes_where_a_copy_would_be_wrong_or_useless() -> None:
    model = tiny_llama(96, seed=3)
    weights = [p for p in model.parameters()]
    with weights_cast_once(model, None) as copied:  # no autocast
        assert copied == 0
    assert torch.is_grad_enabled() and all(p.requires_grad for p in weights)
    with weights_cast_once(model, BF16) as copied:  # every layer could train inside: a copy would go stale
        assert copied == 0
    with torch.no_grad(), weights_cast_once(model, BF16, scope="none") as copied:
        assert copied == 0
    assert [p for p in model.parameters()] == weights
    bf16 = tiny_llama(96, seed=3).to(BF16)  # already in the autocast dtype
    with torch.no_grad(), weights_cast_once(bf16, BF16) as copied:
        assert copied == 0
    lora = get_peft_model(tiny_llama(96, tie=False, seed=3), LoraConfig(r=2, target_modules=["lm_head", "q_proj"]))
    with torch.no_grad(), weights_cast_once(lora, BF16, scope="head") as copied:  # a peft head holds adapter weights
        assert copied == 0
    zero3 = tiny_llama(96, seed=3)
    zero3.model.layers[0].mlp.up_proj.weight.ds_id = 7  # how DeepSpeed ZeRO-3 marks the parameters it partitions
    with torch.no_grad(), weights_cast_once(zero3, BF16) as copied:  # a sharding engine re-assigns them per forward
        assert copied == 0
    with pytest.raises(ValueError, match="cast scope"):
        castable_linears(model, "all")


def test_the_weights_come_back_when_the_body_raises() -> None:
    model = tiny_llama(96, seed=3)
    weight, up = model.lm_head.weight, model.model.layers[0].mlp.up_proj.weight
    with pytest.raises(RuntimeError, match="boom"), torch.no_grad(), weights_cast_once(model, BF16):
        raise RuntimeError("boom")
    assert model.lm_head.weight is weight is model.model.embed_tokens.weight
    assert model.model.layers[0].mlp.up_proj.weight is up
