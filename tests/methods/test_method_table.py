"""Every parameter strategy on a tiny random Llama: parameter count from shapes, identity at init,
frozen weights untouched and trainable ones moved by training, save -> load, merge or a clear refusal."""

from __future__ import annotations

import pytest
import torch

from tests.helpers.tiny import tiny_llama
from tests.methods.helpers import (
    HIDDEN,
    KV,
    LAYERS,
    LINEARS,
    VOCAB,
    build,
    ids,
    logits,
    lokr_factor,
    method,
    train_steps,
)
from tuneforge.errors import TuneforgeError
from tuneforge.export.merge import merge_adapter
from tuneforge.methods import can_merge, count_parameters, load_method, save_method

R, T, ENC = 4, 5, 32  # rank, virtual tokens, prompt-encoder width used below


def lora_count(r=R):
    return LAYERS * sum(r * (i + o) for _, i, o in LINEARS)


def lokr_count(r=R):
    total = 0
    for _, i, o in LINEARS:
        (ol, ok), (im, in_) = lokr_factor(o), lokr_factor(i)
        w2 = r * (ok + in_) if r < max(ok, in_) / 2 else ok * in_
        total += ol * im + w2
    return LAYERS * total


def block_params():
    return (
        sum(i * o for _, i, o in LINEARS) + 2 * HIDDEN
    )  # 7 linears (no bias) + 2 RMSNorm weights


# id, method config, expected trainable count (from shapes), identity at init, untied base
CASES = [
    (
        "lora",
        {"type": "lora", "lora": {"r": R, "alpha": 8, "dropout": 0.0}},
        lora_count(),
        True,
        False,
    ),
    (
        "rslora",
        {"type": "rslora", "lora": {"r": R, "alpha": 8, "dropout": 0.0}},
        lora_count(),
        True,
        False,
    ),
    (
        "dora",
        {"type": "dora", "lora": {"r": R, "alpha": 8, "dropout": 0.0}},
        lora_count() + LAYERS * sum(o for _, _, o in LINEARS),
        True,
        False,
    ),
    (
        "pissa",
        {"type": "pissa", "lora": {"r": R, "alpha": R, "dropout": 0.0}},
        lora_count(),
        True,
        False,
    ),
    (
        "loraplus",
        {"type": "loraplus", "lora": {"r": R, "alpha": 8, "dropout": 0.0}},
        lora_count(),
        True,
        False,
    ),
    (
        "lora+modules_to_save",
        {
            "type": "lora",
            "lora": {
                "r": R,
                "alpha": 8,
                "dropout": 0.0,
                "target_modules": ["q_proj", "v_proj"],
                "modules_to_save": ["embed_tokens", "lm_head"],
            },
        },
        LAYERS * R * ((HIDDEN + HIDDEN) + (HIDDEN + KV)) + 2 * VOCAB * HIDDEN,
        True,
        True,
    ),
    (
        "adalora",
        {"type": "adalora", "adalora": {"init_r": R, "target_r": 2}},
        LAYERS * sum(R * (i + o) + R for _, i, o in LINEARS),
        True,
        False,
    ),
    (
        "vera",
        {"type": "vera", "vera": {"r": 16}},
        LAYERS * ((16 + HIDDEN) + (16 + KV)),
        True,
        False,
    ),
    ("ia3", {"type": "ia3"}, LAYERS * (KV + KV + 128), True, False),
    (
        "loha",
        {"type": "loha", "loha": {"r": R}},
        LAYERS * sum(2 * R * (i + o) for _, i, o in LINEARS),
        True,
        False,
    ),
    ("lokr", {"type": "lokr", "lokr": {"r": R}}, lokr_count(), True, False),
    (
        "oft",
        {"type": "oft", "oft": {"block_size": 16}},
        LAYERS * sum((i // 16) * (16 * 15 // 2) for _, i, _ in LINEARS),
        True,
        False,
    ),
    (
        "prefix_tuning",
        {"type": "prefix_tuning", "prefix": {"num_virtual_tokens": T}},
        T * LAYERS * 2 * KV,
        False,
        False,
    ),
    (
        "p_tuning_v2",
        {
            "type": "p_tuning_v2",
            "prefix": {"num_virtual_tokens": T, "encoder_hidden_size": ENC},
        },
        # peft sizes the prefix per key/value head group (GQA): token width = kv width.
        T * KV + (KV * ENC + ENC) + (ENC * LAYERS * 2 * KV + LAYERS * 2 * KV),
        False,
        False,
    ),
    (
        "prompt_tuning",
        {"type": "prompt_tuning", "prompt_tuning": {"num_virtual_tokens": T}},
        T * HIDDEN,
        False,
        False,
    ),
    (
        "p_tuning",
        {
            "type": "p_tuning",
            "p_tuning": {"num_virtual_tokens": T, "encoder_hidden_size": ENC},
        },
        T * HIDDEN + (HIDDEN * ENC + ENC) + (ENC * ENC + ENC) + (ENC * HIDDEN + HIDDEN),
        False,
        False,
    ),
    (
        "bottleneck",
        {"type": "bottleneck", "bottleneck": {"reduction_factor": 16}},
        LAYERS * 2 * (HIDDEN * 4 + 4 + 4 * HIDDEN + HIDDEN),
        True,
        False,
    ),
    (
        "bottleneck-mlp-only",
        {
            "type": "bottleneck",
            "bottleneck": {
                "reduction_factor": 8,
                "placement": ["mlp"],
                "non_linearity": "gelu",
                "layers": [1],
            },
        },
        HIDDEN * 8 + 8 + 8 * HIDDEN + HIDDEN,
        True,
        False,
    ),
    (
        "freeze",
        {"type": "freeze", "freeze": {"train_last_n_layers": 1}},
        block_params(),
        True,
        False,
    ),
    ("full", {"type": "full"}, None, True, False),  # None: every parameter
]
IDS = [c[0] for c in CASES]


def base_for(untied: bool):
    return tiny_llama(VOCAB, tie=not untied)


def real_positions(out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Logits of the real tokens (prompt tuning / P-Tuning also return the virtual positions first)."""
    return out[:, -x.size(1) :]


@pytest.mark.parametrize(
    ("name", "cfg", "expected", "identity", "untied"), CASES, ids=IDS
)
def test_method_contract(tmp_path, name, cfg, expected, identity, untied):
    """One model per method, checked in order: count, identity at init, a training step, save/load, merge."""
    x = ids()
    base_logits = logits(base_for(untied), x)
    model = build(base_for(untied), cfg)

    trainable_count, total = count_parameters(model)
    assert trainable_count == (total if expected is None else expected)

    if identity:
        # PiSSA moves the top singular directions out of W into A, B: equal up to fp32 rounding.
        torch.testing.assert_close(
            logits(model, x),
            base_logits,
            atol=1e-4 if name == "pissa" else 1e-6,
            rtol=0,
        )

    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    train_steps(model)
    after = dict(model.named_parameters())
    for n, old in before.items():
        if n in trainable:
            assert not torch.equal(after[n], old), f"{n} did not change"
        else:
            assert torch.equal(after[n], old), f"frozen {n} changed"

    trained = logits(model, x)
    assert (
        real_positions(trained, x) - base_logits
    ).abs().max() > 1e-4  # training changed the outputs
    if name in ("full", "freeze"):
        return  # whole-model methods are saved with save_pretrained; covered by the run tests
    save_method(model, tmp_path / "adapter", method(cfg))
    loaded = load_method(base_for(untied), tmp_path / "adapter", method(cfg))
    # Identical up to float rounding (PiSSA is saved as the change since init, on the original base).
    torch.testing.assert_close(
        logits(loaded, x), trained, atol=1e-4 if name == "pissa" else 1e-6, rtol=0
    )
    if can_merge(method(cfg)):
        merged = merge_adapter(loaded)
        assert not hasattr(merged, "peft_config")
        torch.testing.assert_close(logits(merged, x), trained, atol=1e-4, rtol=1e-4)
    else:
        with pytest.raises(TuneforgeError, match="cannot be merged"):
            merge_adapter(loaded)
