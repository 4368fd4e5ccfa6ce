"""The architecture table is the one list of model types: the loss and the memory estimate both read
it, and its facts hold for tiny models of each architecture built from transformers' own code."""

from __future__ import annotations

from types import MappingProxyType

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM

import tuneforge.models.architectures as arch
from tuneforge.advise.memory import ModelShape
from tuneforge.models.architectures import ARCHITECTURES, Architecture, architecture
from tuneforge.objectives.losses import causal_lm_loss, supports_trained_positions_loss, trained_positions_loss

VOCAB = 128
MOE = {"mixtral", "qwen2_moe", "qwen3_moe"}


def tiny(model_type: str):
    """A 2-block model of ``model_type`` (random weights, fp32), small enough to build in milliseconds."""
    kwargs = dict(
        vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=8, max_position_embeddings=64, pad_token_id=None, bos_token_id=None, eos_token_id=None,
    )  # fmt: skip
    if model_type in MOE:
        kwargs.update(moe_intermediate_size=32, num_experts=4, num_local_experts=4, num_experts_per_tok=2, shared_expert_intermediate_size=32)
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(AutoConfig.for_model(model_type, **kwargs), dtype=torch.float32).eval()


def test_both_readers_ask_the_table(monkeypatch):
    """A model type added to (or removed from) the table changes the loss path and the estimate alike."""
    config = tiny("llama").config
    model = tiny("llama")
    assert supports_trained_positions_loss(model) and ModelShape.from_config(config).gated_mlp
    monkeypatch.setattr(arch, "ARCHITECTURES", MappingProxyType({}))
    assert not supports_trained_positions_loss(model) and not ModelShape.from_config(config).gated_mlp
    monkeypatch.setattr(arch, "ARCHITECTURES", MappingProxyType({"llama": Architecture(gated_mlp=False, plain_head=True)}))
    assert supports_trained_positions_loss(model) and not ModelShape.from_config(config).gated_mlp


def test_unknown_types_get_the_safe_answers():
    assert architecture("some_new_model") == Architecture(gated_mlp=False, plain_head=False)
    assert architecture(None) == architecture("")


@pytest.mark.parametrize("model_type", sorted(t for t, a in ARCHITECTURES.items() if a.plain_head))
def test_plain_head_types_give_the_full_logits_loss_on_trained_positions(model_type):
    model = tiny(model_type)
    ids = torch.randint(0, VOCAB, (2, 10), generator=torch.Generator().manual_seed(1))
    labels = ids.clone()
    labels[:, :4] = -100
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    with torch.no_grad():
        full = causal_lm_loss(model(**inputs, use_cache=False).logits, labels)
        fast = trained_positions_loss(model, inputs, labels)
    torch.testing.assert_close(fast, full, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("model_type", sorted(t for t in ARCHITECTURES if t not in MOE))
def test_gated_flag_matches_the_linear_weights_of_a_block(model_type):
    """The estimate's weights per block (3 MLP matrices when gated, else 2) against the real block."""
    model = tiny(model_type)
    block = model.get_decoder().layers[0]
    matrices = sum(p.numel() for p in block.parameters() if p.dim() == 2)
    assert ModelShape.from_config(model.config).linear_params_per_block() == matrices
