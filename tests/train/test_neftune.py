"""NEFTune through transformers' own hook: noise on the input embeddings while training only, and none without alpha."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerCallback

from tuneforge.config import load_recipe
from tuneforge.errors import ConfigError
from tuneforge.recipes import train

ROWS = [{"instruction": f"Say {w}", "output": w} for w in ["alpha", "beta", "gamma", "delta", "epsilon", "zeta"]]


class EmbeddingProbe(TrainerCallback):
    """At each step: is the embedding output noisy in train mode, and clean in eval mode?"""

    def __init__(self):
        self.train_noisy: list[bool] = []
        self.eval_noisy: list[bool] = []

    def on_step_begin(self, args, state, control, model=None, **kwargs):
        plain = model.get_base_model() if hasattr(model, "get_base_model") else model
        emb = plain.get_input_embeddings()
        ids = torch.tensor([[3, 4, 5, 6]])
        clean = emb.weight[ids].detach()
        was_training = emb.training  # the Trainer switches to train mode inside its step, after this callback
        with torch.no_grad():
            emb.train()
            self.train_noisy.append(not torch.equal(emb(ids), clean))
            emb.eval()
            self.eval_noisy.append(not torch.equal(emb(ids), clean))
        emb.train(was_training)


def _recipe(tmp_path: Path, model_dir: Path, name: str, **training):
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    return load_recipe(
        base={
            "model": {"name": str(model_dir)},
            "method": {"type": "lora", "lora": {"r": 4, "alpha": 8, "dropout": 0.0}},
            "data": {"train": str(data), "max_length": 64},
            "training": {"max_steps": 3, "batch_size": 2, "learning_rate": 1e-2, "logging_steps": 1, "precision": "fp32", "compile": False, **training},
            "output": {"dir": str(tmp_path / name)},
        }
    )


def _adapter(run_dir: Path) -> dict:
    return load_file(str(run_dir / "adapter" / "adapter_model.safetensors"))


def test_noise_in_training_only_and_no_alpha_is_unchanged(tmp_path, tiny_model_dir):
    probe = EmbeddingProbe()
    noisy = train(_recipe(tmp_path, tiny_model_dir, "noisy", neftune_alpha=5.0), callbacks=[probe])
    assert probe.train_noisy == [True] * 3 and probe.eval_noisy == [False] * 3

    clean_probe = EmbeddingProbe()
    plain = train(_recipe(tmp_path, tiny_model_dir, "plain"), callbacks=[clean_probe])
    again = train(_recipe(tmp_path, tiny_model_dir, "again"))
    assert clean_probe.train_noisy == [False] * 3
    a, b, n = _adapter(plain.run_dir), _adapter(again.run_dir), _adapter(noisy.run_dir)
    assert all(torch.equal(a[k], b[k]) for k in a)  # without alpha: bit for bit the same run
    assert any(not torch.equal(a[k], n[k]) for k in a)  # the noise reached the loss (our trained-positions path)
    assert noisy.summary["train_loss"] != plain.summary["train_loss"]


def test_the_hook_is_gone_after_training(tmp_path, tiny_model_dir):
    from tuneforge.targets import load_run

    run = train(_recipe(tmp_path, tiny_model_dir, "noisy", neftune_alpha=5.0)).run_dir
    model = load_run(run).model
    emb = model.get_base_model().get_input_embeddings()
    emb.train()
    ids = torch.tensor([[3, 4, 5]])
    assert torch.equal(emb(ids), emb.weight[ids])


def test_neftune_is_refused_where_it_was_not_tested():
    with pytest.raises(ConfigError, match="neftune_alpha"):
        load_recipe(base={"data": {"train": "p.jsonl"}, "objective": {"type": "dpo"}, "training": {"neftune_alpha": 5}})
