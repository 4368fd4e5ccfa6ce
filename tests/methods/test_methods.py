import pytest
import torch

from tests.helpers.tiny import tiny_llama
from tuneforge.config.schema import MethodSection
from tuneforge.errors import ConfigError
from tuneforge.methods import apply_method, count_parameters

VOCAB = 320


def logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits


def test_lora_is_identity_at_init_and_counts_match_formula():
    base = tiny_llama(VOCAB)
    ids = torch.randint(0, VOCAB, (2, 12))
    ref = logits(base, ids)
    model = apply_method(
        base, MethodSection(type="lora", lora={"r": 4, "alpha": 8, "dropout": 0.0})
    )
    assert torch.allclose(logits(model, ids), ref, atol=1e-6)
    # all-linear on Llama: q,k,v,o,gate,up,down in each of 2 layers; r * (in + out) each.
    h, kv, inter, r = 64, 32, 128, 4  # k/v project to 2 kv heads * 16 head dim
    per_layer = r * ((h + h) + (h + kv) * 2 + (h + h) + (h + inter) * 2 + (inter + h))
    trainable, _total = count_parameters(model)
    assert trainable == 2 * per_layer


def test_freeze_trains_only_last_blocks_and_named_modules():
    model = apply_method(
        tiny_llama(VOCAB),
        MethodSection(
            type="freeze",
            freeze={"train_last_n_layers": 1, "train_modules": ["model.norm"]},
        ),
    )
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(
        n.startswith("model.layers.1.") or n == "model.norm.weight" for n in trainable
    )
    assert "model.norm.weight" in trainable and not any(
        n.startswith("model.layers.0.") for n in trainable
    )


def test_freeze_rejects_too_many_layers_and_unknown_module():
    with pytest.raises(ConfigError, match="has 2 blocks"):
        apply_method(
            tiny_llama(VOCAB),
            MethodSection(type="freeze", freeze={"train_last_n_layers": 3}),
        )
    with pytest.raises(ConfigError, match="no parameter name matches"):
        apply_method(
            tiny_llama(VOCAB),
            MethodSection(type="freeze", freeze={"train_modules": ["nonexistent"]}),
        )


def test_full_trains_everything():
    model = apply_method(tiny_llama(VOCAB), MethodSection(type="full"))
    trainable, total = count_parameters(model)
    assert trainable == total


def test_lora_bad_target_is_config_error():
    with pytest.raises(ConfigError, match="method.lora.target_modules"):
        apply_method(
            tiny_llama(VOCAB),
            MethodSection(type="lora", lora={"target_modules": ["nope_proj"]}),
        )


def test_lora_targets_by_regex_and_names():
    r = 4
    by_regex = apply_method(
        tiny_llama(VOCAB),
        MethodSection(type="lora", lora={"r": r, "target_modules": r".*\.(q|v)_proj"}),
    )
    by_names = apply_method(
        tiny_llama(VOCAB),
        MethodSection(
            type="lora", lora={"r": r, "target_modules": ["q_proj", "v_proj"]}
        ),
    )
    expected = 2 * r * ((64 + 64) + (64 + 32))  # q: 64 -> 64, v: 64 -> 32, in 2 blocks
    assert count_parameters(by_regex)[0] == count_parameters(by_names)[0] == expected


def test_lora_modules_to_save_typo_is_config_error():
    with pytest.raises(ConfigError, match="modules_to_save"):
        apply_method(
            tiny_llama(VOCAB),
            MethodSection(type="lora", lora={"modules_to_save": ["embed_tokenz"]}),
        )
