"""ppo through tuneforge.recipes.train on a tiny model: the run directory, the value head, the first update, resume."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerCallback

from tests.helpers.tiny import tiny_llama, tiny_tokenizer
from tuneforge.config import load_recipe
from tuneforge.config.ppo import PpoOptions
from tuneforge.errors import ConfigError
from tuneforge.recipes import train
from tuneforge.targets import load_run
from tuneforge.train.ppo_trainer import minibatch_rows
from tuneforge.train.rollout import completion_logps
from tuneforge.train.value_head import VALUE_HEAD_FILE, ValueHead, logps_and_values

WORDS = ["fox", "dog", "cat", "owl", "bee", "elk"]
REWARD_CODE = '''
def longer(prompts, completions, **columns):
    """Deterministic: longer completions score higher."""
    return [min(len(c), 30) / 30 for c in completions]
'''
LOGGED = ("loss", "reward/mean", "reward/longer/mean", "kl", "non_score_reward", "policy_loss", "value_loss", "clipfrac",
          "value_clipfrac", "importance_ratio", "approx_kl", "value/mean", "returns/mean", "rollout_s", "update_s",
          "completion_length", "truncated_share")  # fmt: skip


def recipe_for(tmp_path: Path, model_dir: Path, *overrides: str):
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "train.jsonl").write_text("".join(json.dumps({"prompt": f"Say a word about {w}", "answer": w}) + "\n" for w in WORDS))
    (tmp_path / "rewards.py").write_text(REWARD_CODE)
    base = {
        "model": {"name": str(model_dir)},
        "method": {"type": "lora", "lora": {"r": 4, "alpha": 8, "dropout": 0.0}},
        "data": {"train": str(tmp_path / "train.jsonl"), "format": "prompt"},
        "objective": {
            "type": "ppo",
            "rewards": [{"type": "function", "function": f"{tmp_path / 'rewards.py'}:longer"}],
            "ppo": {"num_generations": 2, "max_completion_length": 8, "ppo_epochs": 2, "num_minibatches": 1, "kl_coef": 0.1},
        },
        "training": {"max_steps": 2, "batch_size": 2, "learning_rate": 5e-2, "logging_steps": 1, "precision": "fp32", "save_steps": 2},
        "output": {"dir": str(tmp_path / "run")},
    }
    return load_recipe(base=base, overrides=list(overrides))


def metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_ppo_run_directory_metrics_and_first_update(tmp_path, tiny_model_dir):
    result = train(recipe_for(tmp_path, tiny_model_dir))
    run = result.run_dir
    for rel in ("recipe.yaml", "adapter/adapter_model.safetensors", VALUE_HEAD_FILE, "metrics.jsonl", "summary.json"):
        assert (run / rel).is_file(), rel
    rows = [r for r in metrics(run) if "loss" in r]
    assert [r["step"] for r in rows] == [1, 2]
    for key in LOGGED:
        assert key in rows[0], key
    first, second = rows
    # the first minibatch of a rollout: the policy has not moved since the rollout, so w = 1 and nothing is clipped;
    # the zero-initialised value head predicted 0 for every state of that rollout. The rollout's log-probs came
    # from the pass that runs each prompt once for its 2 completions (train/group_prompt.py), the update's from
    # the plain forward over every row: w = 1 says they agree.
    assert "once per group" in result.summary["speed_plan"]
    assert first["importance_ratio"] == pytest.approx(1.0, abs=1e-6)
    assert first["approx_kl"] == pytest.approx(0.0, abs=1e-10) and first["clipfrac"] == 0.0
    assert first["value/mean"] == 0.0
    assert first["kl"] == pytest.approx(0.0, abs=1e-6)  # a fresh LoRA adapter (B = 0) is the reference exactly
    assert second["importance_ratio"] != pytest.approx(1.0, abs=1e-6)  # second epoch on the same rollout: the policy moved
    head = load_file(str(run / VALUE_HEAD_FILE))
    assert head["linear.weight"].abs().sum() > 0  # the value head trained
    plain = load_file(str(run / "adapter" / "adapter_model.safetensors"))
    assert next(v for k, v in plain.items() if "lora_B" in k).abs().sum() > 0
    assert (run / "checkpoints" / "checkpoint-2" / VALUE_HEAD_FILE).is_file()  # --resume restores it
    assert load_run(run).model is not None  # the adapter directory is a normal one


def test_value_head_starts_at_zero_and_logps_match_the_rollout_function():
    tok = tiny_tokenizer()
    model = tiny_llama(len(tok)).train()
    head = ValueHead(model.config.hidden_size)
    ids = torch.randint(3, len(tok), (3, 9))
    mask = torch.ones_like(ids)
    mask[0, :2] = 0  # left padding
    logps, values = logps_and_values(model, head, ids, mask, 4, temperature=0.7)
    assert torch.equal(values, torch.zeros(3, 4))
    assert torch.allclose(logps, completion_logps(model, ids, mask, 4, temperature=0.7), atol=1e-6)
    with torch.no_grad():
        head.linear.bias.fill_(0.5)
    assert torch.allclose(logps_and_values(model, head, ids, mask, 4)[1], torch.full((3, 4), 0.5))


def test_each_ppo_epoch_is_a_shuffle_of_the_whole_rollout():
    opts = PpoOptions(ppo_epochs=3, num_minibatches=2)
    for epoch in range(3):
        parts = [minibatch_rows(7, opts, epoch * 2 + m, seed=42, rollout_number=5) for m in range(2)]
        assert sorted(torch.cat(parts).tolist()) == list(range(7)) and [len(p) for p in parts] == [4, 3]
    first, again = minibatch_rows(7, opts, 0, seed=42, rollout_number=5), minibatch_rows(7, opts, 0, seed=42, rollout_number=5)
    assert torch.equal(first, again)  # seeded: a resumed run draws the same minibatches
    assert not all(torch.equal(minibatch_rows(7, opts, 2 * e, seed=42, rollout_number=5), first) for e in (1, 2))


@pytest.mark.parametrize("adaptive", [False, True], ids=["fixed-kl", "adaptive-kl"])
def test_resume_restores_the_value_head(tmp_path, tiny_model_dir, adaptive):
    """One update per rollout; stop after step 1, resume to 2: the adapter and value head equal the uninterrupted run's.

    Without the head's restore the resumed head would start from zeros again, and without zeroing its
    gradients every step (the Trainer zeroes the model's only) the uninterrupted run would accumulate them.
    With adaptive KL the second rollout must use the weight the first one adapted (saved in the checkpoint).
    """
    opts = ("training.max_steps=2", "training.save_steps=1", "objective.ppo.ppo_epochs=1")
    if adaptive:
        opts += ("objective.ppo.target_kl=1.0", "objective.ppo.kl_horizon=4")
    full = train(recipe_for(tmp_path / "a", tiny_model_dir, *opts))

    class Stop(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if state.global_step == 1:
                control.should_training_stop = True

    train(recipe_for(tmp_path / "b", tiny_model_dir, *opts), callbacks=[Stop()])
    run_b = tmp_path / "b" / "run"
    shutil.rmtree(run_b / "adapter")
    (run_b / "summary.json").unlink()
    (run_b / VALUE_HEAD_FILE).unlink()
    train(load_recipe(run_b / "recipe.yaml"), resume=True)
    for rel in ("adapter/adapter_model.safetensors", VALUE_HEAD_FILE):
        a, b = load_file(str(full.run_dir / rel)), load_file(str(run_b / rel))
        assert a.keys() == b.keys()
        for k in a:
            assert torch.allclose(a[k], b[k], atol=1e-6), (rel, k)
    if adaptive:  # the first rollout has KL 0 (policy = reference), so the weight falls by 20% x 4 completions / 4
        coefs = [r["kl_coef"] for r in metrics(full.run_dir) if "loss" in r]
        assert coefs == pytest.approx([0.1, 0.1 * 0.8])
        assert json.loads((run_b / "ppo_state.json").read_text())["kl_coef"] == pytest.approx(json.loads((full.run_dir / "ppo_state.json").read_text())["kl_coef"])


def test_full_fine_tuning_keeps_a_frozen_reference(tmp_path, tiny_model_dir):
    result = train(recipe_for(tmp_path, tiny_model_dir, "method.type=full", "training.learning_rate=1e-3", "training.save_steps=10"))
    rows = [r for r in metrics(result.run_dir) if "loss" in r]
    assert rows[0]["kl"] == pytest.approx(0.0, abs=1e-6)
    assert (result.run_dir / "model").is_dir() and (result.run_dir / VALUE_HEAD_FILE).is_file()


def test_no_kl_without_kl_coef_and_the_missing_eos_penalty(tmp_path, tiny_model_dir):
    """kl_coef 0 keeps no reference and logs no kl; a truncated completion's score loses missing_eos_penalty."""
    recipe = recipe_for(tmp_path, tiny_model_dir, "objective.ppo.kl_coef=0", "objective.ppo.missing_eos_penalty=1.0", "training.max_steps=1")
    row = next(r for r in metrics(train(recipe).run_dir) if "loss" in r)
    assert "kl" not in row and "non_score_reward" not in row
    assert row["truncated_share"] > 0  # the random tiny model rarely ends within 8 tokens
    assert row["reward/mean"] == pytest.approx(row["reward/longer/mean"] - row["truncated_share"], abs=1e-5)


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ("objective.ppo.num_minibatches=5", "num_minibatches"),
        ("data.val_fraction=0.2", "eval.data"),
        ("objective.ppo.kl_coef=0 objective.ppo.target_kl=1.0", "target_kl"),
    ],
)
def test_settings_that_cannot_run_are_config_errors(tmp_path, tiny_model_dir, override, needle):
    with pytest.raises(ConfigError, match=needle):
        recipe_for(tmp_path, tiny_model_dir, *override.split())
