"""grpo and rloo through tuneforge.recipes.train on a tiny model: the run-directory contract, load_run, resume."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerCallback

from tuneforge.config import load_recipe
from tuneforge.errors import ConfigError
from tuneforge.recipes import train
from tuneforge.targets import load_run

WORDS = ["fox", "dog", "cat", "owl", "bee", "elk"]
REWARD_CODE = '''
def longer(prompts, completions, **columns):
    """Deterministic: longer completions score higher, so groups have reward variance."""
    return [min(len(c), 30) / 30 for c in completions]
'''
LOGGED = ("loss", "rollout_s", "update_s", "gen_tokens_per_s", "reward/mean", "reward/std", "reward/longer/mean",
          "zero_variance_share", "clip_ratio", "completion_length", "truncated_share", "tokens_per_s")  # fmt: skip


def recipe_for(tmp_path: Path, model_dir: Path, *overrides: str):
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "train.jsonl").write_text("".join(json.dumps({"prompt": f"Say a word about {w}", "answer": w}) + "\n" for w in WORDS))
    (tmp_path / "rewards.py").write_text(REWARD_CODE)
    base = {
        "model": {"name": str(model_dir)},
        "method": {"type": "lora", "lora": {"r": 4, "alpha": 8, "dropout": 0.0}},
        "data": {"train": str(tmp_path / "train.jsonl"), "format": "prompt"},
        "objective": {
            "type": "grpo",
            "rewards": [{"type": "function", "function": f"{tmp_path / 'rewards.py'}:longer"}],
            "grpo": {"num_generations": 3, "max_completion_length": 8},
        },
        "training": {"max_steps": 4, "batch_size": 2, "learning_rate": 5e-2, "logging_steps": 1, "precision": "fp32", "save_steps": 2},
        "output": {"dir": str(tmp_path / "run")},
    }
    return load_recipe(base=base, overrides=list(overrides))


def metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_grpo_run_directory_and_load_run(tmp_path, tiny_model_dir):
    result = train(recipe_for(tmp_path, tiny_model_dir))
    run = result.run_dir
    for rel in ("recipe.yaml", "adapter/adapter_model.safetensors", "metrics.jsonl", "summary.json"):
        assert (run / rel).is_file(), rel
    rows = [r for r in metrics(run) if "loss" in r]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    for key in LOGGED:
        assert key in rows[0], key
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 4 and summary["train_tokens_seen"] > 0
    assert (run / "plots" / "rewards.png").is_file()  # the reward curve, beside plots/loss.png
    loaded = load_run(run)
    plain = load_file(str(run / "adapter" / "adapter_model.safetensors"))
    state = loaded.model.state_dict()
    b_key = next(k for k in plain if "lora_B" in k)
    assert any(torch.equal(v, plain[b_key]) for k, v in state.items() if "lora_B" in k)
    assert plain[b_key].abs().sum() > 0  # the adapter learned something


def test_rloo_runs_through_the_recipe_and_reports_the_held_out_rewards(tmp_path, tiny_model_dir):
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "test.jsonl").write_text("".join(json.dumps({"prompt": f"Say a word about {w}", "answer": w}) + "\n" for w in WORDS[:2]))
    result = train(recipe_for(tmp_path, tiny_model_dir, "objective.type=rloo", "training.max_steps=2", f"eval.data={tmp_path / 'test.jsonl'}",
                              "eval.max_new_tokens=4"))  # fmt: skip
    assert result.summary["steps"] == 2
    report = (result.run_dir / "eval" / "report.md").read_text()
    assert report.startswith("# rloo run: held-out rewards") and "| mean reward |" in report and "| reward `longer` |" in report
    assert "../plots/rewards.png" in report


def test_resume_continues_from_the_checkpoint(tmp_path, tiny_model_dir):
    """Stop after step 2, resume: the steps continue (3, 4) and the final adapter equals the uninterrupted run's.

    Exact because the prompt order is fixed before training and the Trainer restores the RNG state of
    the checkpoint, which the rollout sampling draws from; with num_iterations > 1 a resume in the middle
    of a rollout's iterations samples that rollout again (the rollout itself is not checkpointed).
    """
    full = train(recipe_for(tmp_path / "a", tiny_model_dir))

    class Stop(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if state.global_step == 2:
                control.should_training_stop = True

    train(recipe_for(tmp_path / "b", tiny_model_dir), callbacks=[Stop()])
    run_b = tmp_path / "b" / "run"
    shutil.rmtree(run_b / "adapter")
    (run_b / "summary.json").unlink()
    resumed = train(load_recipe(run_b / "recipe.yaml"), resume=True)
    assert resumed.summary["steps"] == 4
    assert [r["step"] for r in metrics(run_b) if "loss" in r] == [1, 2, 3, 4]
    a = load_file(str(full.run_dir / "adapter" / "adapter_model.safetensors"))
    b = load_file(str(run_b / "adapter" / "adapter_model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-6), k


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ("objective.grpo.overlong_buffer=8", "overlong_buffer"),
        ("data.val_fraction=0.2", "eval.data"),
    ],
)
def test_settings_that_cannot_run_are_config_errors(tmp_path, tiny_model_dir, override, needle):
    with pytest.raises(ConfigError, match=needle):
        recipe_for(tmp_path, tiny_model_dir, override)


def test_sharing_each_prompt_across_its_group_keeps_the_gradients(tmp_path, tiny_model_dir):
    """training.share_prefix (auto on CPU) runs each prompt once per group in the update: the plan says so,
    and the first step's gradient norm equals the plain forward's (the first step's loss is -mean advantage
    whatever the log-probs, so the gradients are what differs if anything does)."""
    runs = {}
    for share in ("auto", "false"):
        result = train(recipe_for(tmp_path / share, tiny_model_dir, f"training.share_prefix={share}", "training.max_steps=2"))
        runs[share] = ([r for r in metrics(result.run_dir) if "loss" in r], result.summary["speed_plan"])
    assert "once per group" in runs["auto"][1] and "share_prefix is false" in runs["false"][1]
    shared, plain = runs["auto"][0][0], runs["false"][0][0]
    assert shared["grad_norm"] > 0
    assert shared["grad_norm"] == pytest.approx(plain["grad_norm"], rel=1e-4)
    assert shared["reward/mean"] == plain["reward/mean"]  # the same rollout: sharing touches the update only
