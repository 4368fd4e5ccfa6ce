"""One short end-to-end ``train()`` per method family on the tiny model, then the run loads back
(``load_run`` rebuilds the tuned model) and exports merged where the method allows it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import MixtralConfig, MixtralForCausalLM

from tests.helpers.tiny import tiny_tokenizer
from tests.methods.helpers import ids
from tuneforge.config import load_recipe
from tuneforge.errors import TuneforgeError
from tuneforge.export.merge import save_merged
from tuneforge.methods.qlora import bitsandbytes_available
from tuneforge.targets import load_run
from tuneforge.recipes import train

ROWS = [
    {"instruction": "Repeat the word", "input": w, "output": w}
    for w in ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"]
]

FAMILIES = [
    (  # PiSSA's converted save and LoRA+'s optimizer groups, through the runner
        "lora-pissa-loraplus",
        {
            "type": "pissa",
            "lora": {"r": 4, "alpha": 4, "dropout": 0.0, "loraplus_lr_ratio": 8},
        },
        "adapter",
        True,
    ),
    (
        "adalora",
        {
            "type": "adalora",
            "adalora": {"init_r": 4, "target_r": 2, "tinit": 1, "tfinal": 1},
        },
        "adapter",
        True,
    ),
    ("loha", {"type": "loha", "loha": {"r": 4}}, "adapter", True),
    (
        "prefix_tuning",
        {"type": "prefix_tuning", "prefix": {"num_virtual_tokens": 4}},
        "adapter",
        False,
    ),
    (
        "prompt_tuning",
        {"type": "prompt_tuning", "prompt_tuning": {"num_virtual_tokens": 4}},
        "adapter",
        False,
    ),
    (
        "bottleneck",
        {"type": "bottleneck", "bottleneck": {"reduction_factor": 8}},
        "adapter",
        False,
    ),
    (
        "freeze",
        {"type": "freeze", "freeze": {"train_fraction": 0.5, "train_norms": True}},
        "model",
        True,
    ),
]
if bitsandbytes_available():
    FAMILIES.append(
        (
            "qlora",
            {
                "type": "qlora",
                "lora": {"r": 4, "dropout": 0.0},
                "qlora": {"compute_dtype": "fp32"},
            },
            "adapter",
            True,
        )
    )


def recipe(tmp_path: Path, model_dir: Path, method: dict):
    train_file = tmp_path / "train.jsonl"
    train_file.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    return load_recipe(
        base={
            "model": {"name": str(model_dir)},
            "method": method,
            "data": {"train": str(train_file), "val_fraction": 0.25, "max_length": 64},
            "training": {
                "max_steps": 4,
                "batch_size": 2,
                "learning_rate": 1e-2,
                "logging_steps": 1,
                "precision": "fp32",
                "eval_steps": 4,
                "save_steps": 100,  # no checkpoint: resume is tested elsewhere
            },
            "eval": {"data": None},
            "output": {"dir": str(tmp_path / "run")},
        }
    )


@pytest.mark.parametrize(
    ("name", "method", "saved", "mergeable"), FAMILIES, ids=[f[0] for f in FAMILIES]
)
def test_method_family_trains_end_to_end(
    tmp_path, tiny_model_dir, name, method, saved, mergeable
):
    result = train(recipe(tmp_path, tiny_model_dir, method))
    run = result.run_dir
    assert (run / saved).is_dir() and not list((run / saved).glob("*.bin"))
    assert result.summary["steps"] == 4
    rows = [
        json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()
    ]
    assert any("eval_loss" in r for r in rows) and all(
        r["loss"] == r["loss"] for r in rows if "loss" in r
    )  # no NaN
    loaded = load_run(run)
    x = ids()
    with torch.no_grad():
        out = loaded.model(input_ids=x).logits
    assert torch.isfinite(out).all()
    if mergeable:
        out_dir = save_merged(loaded.model, loaded.tokenizer, tmp_path / "merged")
        assert (out_dir / "model.safetensors").is_file()
    else:
        with pytest.raises(TuneforgeError, match="cannot be merged"):
            save_merged(loaded.model, loaded.tokenizer, tmp_path / "merged")


def test_moe_method_trains_end_to_end(tmp_path):
    model_dir = tmp_path / "tiny-mixtral"
    tok = tiny_tokenizer()
    torch.manual_seed(0)
    MixtralForCausalLM(
        MixtralConfig(
            vocab_size=len(tok),
            hidden_size=32,
            intermediate_size=48,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            num_local_experts=4,
            num_experts_per_tok=2,
            bos_token_id=1,
            eos_token_id=2,
            pad_token_id=0,
        )
    ).save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    result = train(recipe(tmp_path, model_dir, {"type": "moe"}))
    assert result.summary["trainable_parameters"] == 2 * 4 * (2 * 48 * 32 + 32 * 48)
    assert (result.run_dir / "model" / "model.safetensors").is_file()
