"""rft through tuneforge.recipes.train on a tiny model: rounds, acceptance stats, the run dir, load_run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tuneforge.config import load_recipe
from tuneforge.errors import ConfigError
from tuneforge.recipes import train
from tuneforge.targets import load_run

WORDS = ["fox", "dog", "cat"]
REWARD_CODE = '''
def even(prompts, completions, **columns):
    """Deterministic: an even-length completion passes (total 1), an odd one does not."""
    return [float(len(c) % 2 == 0) for c in completions]
'''


def recipe_for(tmp_path: Path, model_dir: Path, *overrides: str):
    rows = "".join(json.dumps({"prompt": f"Say a word about {w}", "answer": w}) + "\n" for w in WORDS)
    (tmp_path / "train.jsonl").write_text(rows)
    (tmp_path / "eval.jsonl").write_text(rows.split("\n", 1)[0] + "\n")
    (tmp_path / "rewards.py").write_text(REWARD_CODE)
    base = {
        "model": {"name": str(model_dir)},
        "method": {"type": "lora", "lora": {"r": 4, "alpha": 8, "dropout": 0.0}},
        "data": {"train": str(tmp_path / "train.jsonl"), "format": "prompt"},
        "objective": {
            "type": "rft",
            "rewards": [{"type": "function", "function": f"{tmp_path / 'rewards.py'}:even"}, {"type": "answer_match", "weight": 0.0}],
            "rft": {"rounds": 2, "samples_per_prompt": 4, "max_new_tokens": 4, "temperature": 1.0, "accept": "threshold", "threshold": 1.0, "max_per_prompt": 2},
        },
        "training": {"epochs": 1, "batch_size": 2, "learning_rate": 5e-2, "logging_steps": 1, "precision": "fp32"},
        "eval": {"data": str(tmp_path / "eval.jsonl"), "max_new_tokens": 4, "batch_size": 4},
        "output": {"dir": str(tmp_path / "run")},
    }
    return load_recipe(base=base, overrides=list(overrides))


def test_rft_rounds_write_the_run_dir_and_the_adapter_loads(tmp_path, tiny_model_dir):
    result = train(recipe_for(tmp_path, tiny_model_dir))
    run = result.run_dir
    for rel in ("recipe.yaml", "adapter/adapter_model.safetensors", "metrics.jsonl", "summary.json", "eval/rewards.json"):
        assert (run / rel).is_file(), rel
    summary = json.loads((run / "summary.json").read_text())
    rounds = summary["rounds"]
    assert [r["round"] for r in rounds] == [1, 2]
    for r in rounds:
        assert r["samples"] == 12 and 0 <= r["accepted"] <= 12
        assert r["acceptance_rate"] == r["accepted"] / 12
        assert r["kept"] <= 2 * 3 and r["kept"] <= r["accepted"]
        assert "rewards/even/mean" in r and r["rewards/even/mean"] == pytest.approx(r["acceptance_rate"])
    assert summary["acceptance_rate"] == [r["acceptance_rate"] for r in rounds]
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [x["round"] for x in lines if "round" in x] == [1, 2]
    assert any("loss" in x for x in lines)
    assert set(summary["eval"]) == {"base", "tuned"} and summary["eval"]["base"]["accuracy"] is not None
    loaded = load_run(run)
    plain = load_file(str(run / "adapter" / "adapter_model.safetensors"))
    b_key = next(k for k in plain if "lora_B" in k)
    assert any(torch.equal(v, plain[b_key]) for k, v in loaded.model.state_dict().items() if "lora_B" in k)
    assert plain[b_key].abs().sum() > 0  # trained on the kept samples


def test_verifier_acceptance_needs_a_verifier_reward(tmp_path, tiny_model_dir):
    with pytest.raises(ConfigError, match="objective.rft.accept 'verifier'"):
        recipe_for(tmp_path, tiny_model_dir, "objective.rft.accept=verifier", "objective.rewards=[{type: format}]")


def test_eval_each_round_scores_the_held_out_prompts_after_every_round(tmp_path, tiny_model_dir):
    result = train(recipe_for(tmp_path, tiny_model_dir, "objective.rft.eval_each_round=true", "objective.rft.rounds=3"))
    summary = result.summary
    held_out = [r["held_out"] for r in summary["rounds"]]
    assert all(h is not None and h["accuracy"] is not None and "reward" in h for h in held_out)
    assert held_out[-1] == summary["eval"]["tuned"]  # the last round's figures are the tuned model's, scored once
    lines = [json.loads(x) for x in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    rounds = [x for x in lines if "round" in x]
    assert [x["round"] for x in rounds] == [1, 2, 3] and all("held_out" in x and "acceptance_rate" in x for x in rounds)


def test_eval_each_round_needs_held_out_prompts(tmp_path, tiny_model_dir):
    with pytest.raises(ConfigError, match="eval_each_round"):
        recipe_for(tmp_path, tiny_model_dir, "objective.rft.eval_each_round=true", "eval.data=null")
