"""Partial fine-tuning (depth, fraction, named modules, embeddings, norms) and MoE expert-only tuning."""

from __future__ import annotations

import pytest
import torch
from transformers import (
    MixtralConfig,
    MixtralForCausalLM,
    Qwen2MoeConfig,
    Qwen2MoeForCausalLM,
)

from tests.helpers.tiny import tiny_llama
from tests.methods.helpers import HIDDEN, VOCAB, build, train_steps
from tuneforge.config.schema import MethodSection
from tuneforge.errors import ConfigError
from tuneforge.methods import count_parameters


def trainable_names(model) -> set[str]:
    return {n for n, p in model.named_parameters() if p.requires_grad}


def test_freeze_fraction_rounds_up_to_whole_blocks():
    model = build(
        tiny_llama(VOCAB), {"type": "freeze", "freeze": {"train_fraction": 0.3}}
    )  # 0.3 * 2 blocks -> 1
    names = trainable_names(model)
    assert names and all(n.startswith("model.layers.1.") for n in names)


def test_freeze_embeddings_and_norms_switches():
    model = build(
        tiny_llama(VOCAB, tie=False),
        {
            "type": "freeze",
            "freeze": {
                "train_last_n_layers": 0,
                "train_embeddings": True,
                "train_norms": True,
            },
        },
    )
    names = trainable_names(model)
    norms = {
        f"model.layers.{i}.{k}.weight"
        for i in range(2)
        for k in ("input_layernorm", "post_attention_layernorm")
    } | {"model.norm.weight"}
    assert names == norms | {"model.embed_tokens.weight"}
    assert count_parameters(model)[0] == VOCAB * HIDDEN + 5 * HIDDEN


def test_freeze_regex_modules_and_bad_regex():
    model = build(
        tiny_llama(VOCAB),
        {
            "type": "freeze",
            "freeze": {
                "train_last_n_layers": 0,
                "train_modules": [r"re:layers\.0\.mlp\."],
            },
        },
    )
    assert trainable_names(model) == {
        f"model.layers.0.mlp.{k}_proj.weight" for k in ("gate", "up", "down")
    }
    with pytest.raises(ConfigError, match="bad regex"):
        build(
            tiny_llama(VOCAB), {"type": "freeze", "freeze": {"train_modules": ["re:("]}}
        )


def test_freeze_depth_options_are_exclusive():
    with pytest.raises(ValueError, match="not both"):
        MethodSection(
            type="freeze", freeze={"train_fraction": 0.5, "train_last_n_layers": 1}
        )


def tiny_mixtral():
    torch.manual_seed(0)
    config = MixtralConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
                           num_key_value_heads=2, num_local_experts=4, num_experts_per_tok=2, max_position_embeddings=64)  # fmt: skip
    return MixtralForCausalLM(config).eval()


def tiny_qwen_moe():
    torch.manual_seed(0)
    config = Qwen2MoeConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=48, moe_intermediate_size=16, shared_expert_intermediate_size=24,
                            num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, num_experts=4, num_experts_per_tok=2,
                            max_position_embeddings=64)  # fmt: skip
    return Qwen2MoeForCausalLM(config).eval()


def test_moe_mixtral_trains_experts_only_router_frozen():
    model = build(tiny_mixtral(), {"type": "moe"})
    names = trainable_names(model)
    # experts: per block, 4 experts x (gate+up: 2*48 x 32, down: 32 x 48)
    assert count_parameters(model)[0] == 2 * 4 * (2 * 48 * 32 + 32 * 48)
    assert all(".experts." in n for n in names)
    assert not any(n.endswith("mlp.gate.weight") for n in names)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    train_steps(model, steps=2)
    for n, p in model.named_parameters():
        assert torch.equal(p, before[n]) != (n in names), (
            n
        )  # trained ones moved, the router and the rest did not


def test_moe_qwen_shared_experts_and_attention_options():
    model = build(tiny_qwen_moe(), {"type": "moe"})
    experts = 2 * 4 * (2 * 16 * 32 + 32 * 16)
    shared = 2 * 3 * 24 * 32
    assert count_parameters(model)[0] == experts + shared
    assert not any(
        "shared_expert_gate" in n or n.endswith("mlp.gate.weight")
        for n in trainable_names(model)
    )
    model = build(
        tiny_qwen_moe(),
        {
            "type": "moe",
            "moe": {"train_shared_experts": False, "train_attention": True},
        },
    )
    attention = 2 * (
        (32 * 32 + 32) + 2 * (32 * 16 + 16) + 32 * 32
    )  # q, k, v with bias; o without
    assert count_parameters(model)[0] == experts + attention


def test_moe_on_dense_model_is_config_error():
    with pytest.raises(ConfigError, match="no expert parameters"):
        build(tiny_llama(VOCAB), {"type": "moe"})
