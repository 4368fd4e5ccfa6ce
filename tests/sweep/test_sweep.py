"""tuneforge sweep on a tiny model: real Optuna trials, each a real run; the best is the minimum; pruning stops runs."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.train.test_run_tiny import recipe_for
from tuneforge.config.load import dump_recipe, load_recipe
from tuneforge.errors import ConfigError
from tuneforge.sweep.study import objective_value, override, run_sweep
from tuneforge.sweep.space import load_space


@pytest.fixture
def recipe_file(tmp_path, tiny_model_dir):
    recipe = recipe_for(tmp_path, tiny_model_dir, "eval.data=null", "training.max_steps=2", "training.eval_steps=1", "training.save_steps=2")
    path = tmp_path / "recipe.yaml"
    dump_recipe(recipe, path)
    return path


def _space(tmp_path, spec: dict):
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_override_round_trips_small_floats():
    assert override("training.learning_rate", 1e-05) == "training.learning_rate=1.0e-05"
    assert load_recipe(base={"data": {"train": "x.jsonl"}}, overrides=[override("training.learning_rate", 1e-05)]).training.learning_rate == 1e-05


def test_sweep_runs_trials_and_keeps_the_best(tmp_path, recipe_file):
    space = _space(tmp_path, {"training.learning_rate": {"low": 1e-4, "high": 5e-2, "log": True}, "method.lora.r": {"choices": [2, 4]}})
    result = run_sweep(recipe_file, space, trials=2, sweep_dir=tmp_path / "sweep", prune=False)
    rows = [json.loads(line) for line in (tmp_path / "sweep" / "trials.jsonl").read_text().splitlines()]
    assert [r["state"] for r in rows] == ["complete"] * 2
    values = [r["value"] for r in rows]
    assert result.best_value == min(values)
    for r in rows:  # each trial's value is what its own run logged, under its own parameters
        run = load_recipe(f"{r['run_dir']}/recipe.yaml")
        assert run.training.learning_rate == pytest.approx(r["params"]["training.learning_rate"])
        assert run.method.lora.r == r["params"]["method.lora.r"]
        logged = [json.loads(x)["eval_loss"] for x in open(f"{r['run_dir']}/metrics.jsonl") if "eval_loss" in x]
        assert r["value"] == pytest.approx(min(logged))
    table = (tmp_path / "sweep" / "trials.md").read_text()
    best_row = min(rows, key=lambda r: r["value"])
    assert f"| {best_row['trial']} (best) | complete | {best_row['value']:.6g} |" in table
    assert (tmp_path / "sweep" / "trials.png").stat().st_size > 1000
    best = load_recipe(tmp_path / "sweep" / "best.yaml")
    assert best.training.learning_rate == pytest.approx(result.best_params["training.learning_rate"])
    # the study survives: a second call continues it
    again = run_sweep(recipe_file, space, trials=1, sweep_dir=tmp_path / "sweep", prune=False)
    assert len(again.trials) == 3 and again.best_value <= result.best_value


def test_pruned_trials_stop_early(tmp_path, recipe_file):
    import optuna

    space = _space(tmp_path, {"training.learning_rate": {"low": 1e-4, "high": 1e-2}})
    always = optuna.pruners.ThresholdPruner(upper=-1.0)  # every validation loss is above -1: deterministic pruning
    with pytest.raises(Exception, match="no trial completed"):
        run_sweep(recipe_file, space, trials=2, sweep_dir=tmp_path / "sweep", pruner=always)
    rows = [json.loads(line) for line in (tmp_path / "sweep" / "trials.jsonl").read_text().splitlines()]
    assert [r["state"] for r in rows] == ["pruned", "pruned"]
    steps = [json.loads(x)["step"] for x in open(f"{rows[0]['run_dir']}/metrics.jsonl") if "eval_loss" in x]
    assert steps == [1]  # stopped at the first evaluation instead of running to max_steps=2


def test_space_errors_name_the_file_and_key(tmp_path, recipe_file):
    with pytest.raises(ConfigError, match="space.yaml: training.learnin_rate is not a key"):
        load_space(_space(tmp_path, {"training.learnin_rate": {"low": 1e-4, "high": 1e-3}}), recipe_file, [])
    with pytest.raises(ConfigError, match="needs numbers low < high"):
        load_space(_space(tmp_path, {"training.learning_rate": {"low": 1e-3, "high": 1e-4}}), recipe_file, [])
    with pytest.raises(ConfigError, match="log: true, which needs low > 0"):
        load_space(_space(tmp_path, {"training.learning_rate": {"low": 0, "high": 1e-4, "log": True}}), recipe_file, [])


def test_unknown_eval_score_is_a_clear_error(tmp_path):
    (tmp_path / "metrics.jsonl").write_text("")
    with pytest.raises(Exception, match="has no score 'json_fields'"):
        objective_value(tmp_path, {"eval": {"tuned": {"loss": 1.0}}}, "json_fields")
