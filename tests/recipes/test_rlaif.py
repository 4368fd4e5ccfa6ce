"""rlaif through its recipe on a tiny random model: offline and online, with stub judges passed as ``judge=``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from safetensors.torch import load_file

from tests.rewards.test_ai_feedback import FirstJudge, LongerJudge
from tuneforge.config import load_recipe
from tuneforge.errors import ConfigError, TuneforgeError
from tuneforge.recipes import RECIPES, dry_run
from tuneforge.recipes.rlaif import train_rlaif

TOPICS = ["fox", "dog", "cat", "owl"]


def recipe_for(tmp_path: Path, model_dir: Path, *overrides: str):
    rows = "".join(json.dumps({"prompt": f"Say a word about {w}"}) + "\n" for w in TOPICS)
    (tmp_path / "train.jsonl").write_text(rows)
    (tmp_path / "eval.jsonl").write_text("".join(json.dumps({"prompt": f"Describe a {w}"}) + "\n" for w in ("bee", "elk")))
    base = {
        "model": {"name": str(model_dir)},
        "method": {"type": "lora", "lora": {"r": 4, "alpha": 8, "dropout": 0.0}},
        "data": {"train": str(tmp_path / "train.jsonl"), "format": "prompt"},
        "objective": {"type": "rlaif", "rlaif": {"max_new_tokens": 6, "judge": {"model": str(model_dir), "max_new_tokens": 8}}},
        "training": {"epochs": 1, "batch_size": 2, "learning_rate": 5e-2, "logging_steps": 1, "precision": "fp32"},
        "eval": {"data": str(tmp_path / "eval.jsonl"), "max_new_tokens": 6, "batch_size": 2},
        "output": {"dir": str(tmp_path / "run")},
    }
    return load_recipe(base=base, overrides=list(overrides))


def lines(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


def test_offline_labels_once_writes_a_reusable_pairs_file_and_trains_dpo(tmp_path, tiny_model_dir):
    assert RECIPES["rlaif"] is train_rlaif
    result = train_rlaif(recipe_for(tmp_path, tiny_model_dir), judge=LongerJudge())
    run = result.run_dir
    for rel in ("recipe.yaml", "adapter/adapter_model.safetensors", "metrics.jsonl", "summary.json", "rlaif/pairs.jsonl", "eval/win_rate.json"):
        assert (run / rel).is_file(), rel
    rows = [json.loads(x) for x in (run / "rlaif" / "pairs.jsonl").read_text().splitlines()]
    summary = json.loads((run / "summary.json").read_text())
    stats = summary["labelling"]
    assert summary["objective"] == "rlaif" and summary["mode"] == "offline"
    assert stats["sampled_pairs"] == 4 and stats["pairs"] == len(rows) >= 2
    assert stats["pairs"] + stats["ties"] + stats["identical"] + stats["empty"] == 4 and stats["ties"] == 0
    assert all(len(r["chosen"]) > len(r["rejected"]) for r in rows)  # exactly the stub's preference
    assert summary["steps"] == -(-len(rows) // 2) and summary["train_examples"] == len(rows)
    assert any("rewards/margins" in x for x in lines(run))  # the preference trainer's DPO logs
    assert summary["eval"]["pairs"] == 2 and 0.0 <= summary["eval"]["win_rate"] <= 1.0
    assert load_file(str(run / "adapter" / "adapter_model.safetensors"))
    reuse = load_recipe(base={
        "model": {"name": str(tiny_model_dir)}, "data": {"train": str(run / "rlaif" / "pairs.jsonl"), "format": "preference"},
        "objective": {"type": "dpo"}, "output": {"dir": str(tmp_path / "dpo")},
    })  # fmt: skip
    assert f"{len(rows)} rows (preference)" in "\n".join(dry_run(reuse).lines())


def test_online_rounds_report_their_counts_and_train_steps_per_round(tmp_path, tiny_model_dir):
    recipe = recipe_for(
        tmp_path, tiny_model_dir, "objective.rlaif.mode=online", "objective.rlaif.rounds=2", "objective.rlaif.steps_per_round=2",
        "objective.rlaif.prompts_per_round=3", "eval.before=false",
    )  # fmt: skip
    result = train_rlaif(recipe, judge=LongerJudge())
    run, summary = result.run_dir, result.summary
    rounds = summary["rounds"]
    assert [r["round"] for r in rounds] == [1, 2]
    rows = [json.loads(x) for x in (run / "rlaif" / "pairs.jsonl").read_text().splitlines()]
    for r in rounds:
        assert r["prompts"] == 3 and r["sampled_pairs"] == 3 and r["ties"] == 0
        assert r["pairs"] == sum(x["round"] == r["round"] for x in rows)
        assert r["steps"] == (2 if r["pairs"] else 0) and r["consistent_share"] in (1.0, None)
    assert summary["pairs"] == [r["pairs"] for r in rounds] and summary["steps"] == sum(r["steps"] for r in rounds)
    assert [x["round"] for x in lines(run) if "round" in x] == [1, 2]
    assert "eval" not in summary  # eval.before off: no win rate
    adapter = load_file(str(run / "adapter" / "adapter_model.safetensors"))
    assert sum(v.abs().sum() for k, v in adapter.items() if "lora_B" in k) > 0  # the rounds' DPO steps moved the adapter


def test_a_position_biased_judge_labels_nothing_and_nothing_is_trained(tmp_path, tiny_model_dir):
    recipe = recipe_for(tmp_path, tiny_model_dir, "objective.rlaif.mode=online", "objective.rlaif.rounds=1", "eval.data=null")
    summary = train_rlaif(recipe, judge=FirstJudge()).summary
    (r,) = summary["rounds"]
    assert r["pairs"] == 0 and r["ties"] == r["judged"] > 0 and r["position_bias_rate"] == 1.0 and r["steps"] == 0
    assert (tmp_path / "run" / "rlaif" / "pairs.jsonl").read_text() == ""
    offline = recipe_for(tmp_path, tiny_model_dir, "eval.data=null", f"output.dir={tmp_path / 'offline'}")
    with pytest.raises(TuneforgeError, match=r"labelled none of 4 sampled pairs \(\d ties"):
        train_rlaif(offline, judge=FirstJudge())


def test_the_default_judge_is_the_recipes_local_model(tmp_path, tiny_model_dir):
    """No judge passed: objective.rlaif.judge.model (a tiny random model) decides by its next-token probabilities
    (judge.verdict auto), so every judged pair has a reading in both orders; with verdict: reply its generated
    replies are unreadable, so every pair is a tie."""
    recipe = recipe_for(tmp_path, tiny_model_dir, "objective.rlaif.mode=online", "objective.rlaif.rounds=1", "eval.data=null")
    (r,) = train_rlaif(recipe).summary["rounds"]
    assert r["judged"] > 0 and r["pairs"] + r["ties"] == r["judged"] and r["unparsed"] == 0
    (tmp_path / "reply").mkdir()
    recipe = recipe_for(tmp_path / "reply", tiny_model_dir, "objective.rlaif.mode=online", "objective.rlaif.rounds=1", "eval.data=null",
                        "objective.rlaif.judge.verdict=reply")  # fmt: skip
    (r,) = train_rlaif(recipe).summary["rounds"]
    assert r["judged"] > 0 and r["pairs"] + r["ties"] == r["judged"] and r["unparsed"] >= r["ties"]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("training.max_steps=3", "applies to rlaif mode offline"),
        ("objective.rlaif.rounds=3", "apply to mode online"),
        ("objective.preference.precompute_reference=true", "rlaif labels its own pairs"),
        ("data.val_fraction=0.5", "no validation loss"),
    ],
)
def test_settings_that_do_not_apply_are_refused(tmp_path, tiny_model_dir, override, message):
    extra = ["objective.rlaif.mode=online"] if override.startswith("training.max_steps") else []
    with pytest.raises(ConfigError, match=message):
        recipe_for(tmp_path, tiny_model_dir, *extra, override)


def test_dry_run_checks_the_prompt_rows_without_a_judge(tmp_path, tiny_model_dir):
    out = "\n".join(dry_run(recipe_for(tmp_path, tiny_model_dir)).lines())
    assert "data.train:" in out and "4 rows (prompt)" in out and "eval.data:" in out
    assert "rlaif samples its training rows" in out


def test_offline_resume_reuses_the_labels(tmp_path, tiny_model_dir):
    """Stop DPO after step 1 and resume: no new sampling or judging, and the adapter equals the uninterrupted run's."""
    import shutil

    import torch
    from transformers import TrainerCallback

    opts = ("training.max_steps=2", "training.save_steps=1", "training.batch_size=1", "eval.before=false")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    full = train_rlaif(recipe_for(tmp_path / "a", tiny_model_dir, *opts), judge=LongerJudge())

    class Stop(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if state.global_step == 1:
                control.should_training_stop = True

    class CountingJudge(LongerJudge):
        calls = 0

        def ask(self, prompts):
            CountingJudge.calls += 1
            return super().ask(prompts)

    train_rlaif(recipe_for(tmp_path / "b", tiny_model_dir, *opts), judge=LongerJudge(), callbacks=[Stop()])
    run_b = tmp_path / "b" / "run"
    pairs_before = (run_b / "rlaif" / "pairs.jsonl").read_text()
    shutil.rmtree(run_b / "adapter")
    (run_b / "summary.json").unlink()
    resumed = train_rlaif(load_recipe(run_b / "recipe.yaml"), resume=True, judge=CountingJudge())
    assert (run_b / "rlaif" / "pairs.jsonl").read_text() == pairs_before
    assert resumed.summary["labelling"]["pairs"] == full.summary["labelling"]["pairs"]
    a = load_file(str(full.run_dir / "adapter" / "adapter_model.safetensors"))
    b = load_file(str(run_b / "adapter" / "adapter_model.safetensors"))
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    assert CountingJudge.calls == int(resumed.summary.get("eval") is not None)  # only the held-out win rate asks the judge


def test_online_resume_is_refused(tmp_path, tiny_model_dir):
    recipe = recipe_for(tmp_path, tiny_model_dir, "objective.rlaif.mode=online")
    with pytest.raises(TuneforgeError, match="online rlaif runs cannot --resume"):
        train_rlaif(recipe, resume=True, judge=LongerJudge())
