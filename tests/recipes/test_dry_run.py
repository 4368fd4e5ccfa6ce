"""``tuneforge train RECIPE --dry-run``, the recipe table, and every recipe shipped under examples/."""

from __future__ import annotations

import json
import typing
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from tuneforge.cli.main import app
from tuneforge.config import load_recipe
from tuneforge.config.schema import ObjectiveSection
from tuneforge.recipes import RECIPES, dry_run

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").rglob("*.yaml"))
runner = CliRunner()


def test_every_objective_has_a_recipe():
    objectives = typing.get_args(ObjectiveSection.model_fields["type"].annotation)
    assert set(RECIPES) == set(objectives)


@pytest.mark.parametrize("recipe", EXAMPLES, ids=lambda p: str(p.relative_to(ROOT)))
def test_example_recipes_pass_dry_run(recipe, monkeypatch):
    monkeypatch.chdir(ROOT)  # the examples name their data relative to the repository root
    result = runner.invoke(app, ["train", str(recipe.relative_to(ROOT)), "--dry-run"])
    assert result.exit_code == 0, result.output
    name = recipe.relative_to(ROOT)
    ready = f"ok: {name} is a pipeline of " if "stages" in yaml.safe_load(recipe.read_text()) else f"ok: {name} is ready to train"
    assert "resolved recipe:" in result.output and ready in result.output
    assert "data.train: " in result.output and " rows (" in result.output


def _recipe(tmp_path: Path, model_dir: Path, rows: list) -> Path:
    data = tmp_path / "train.jsonl"
    data.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        f"model: {{name: {model_dir}}}\ndata: {{train: {data}, max_length: 64}}\n"
        f"training: {{precision: fp32, batch_size: 2}}\noutput: {{dir: {tmp_path / 'run'}}}\n"
    )
    return recipe


ROWS = [{"instruction": "Repeat", "input": w, "output": w} for w in ("alpha", "beta", "gamma")]


def test_dry_run_plans_without_model_weights(tmp_path, tiny_model_dir):
    """Tokenised counts and the speed plan come from the tokenizer and config alone: the weights are gone."""
    for weights in tiny_model_dir.glob("*.safetensors"):
        weights.unlink()
    recipe = _recipe(tmp_path, tiny_model_dir, ROWS)
    result = runner.invoke(app, ["train", str(recipe), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "data.train: " in result.output and "3 rows (alpaca)" in result.output
    assert "examples: 3 examples" in result.output
    assert "speed: attention" in result.output
    assert not (tmp_path / "run").exists()  # nothing written


def test_dry_run_stops_on_a_bad_row_with_its_line(tmp_path, tiny_model_dir):
    recipe = _recipe(tmp_path, tiny_model_dir, [*ROWS, '{"instruction": "x"'])
    result = runner.invoke(app, ["train", str(recipe), "--dry-run"])
    assert result.exit_code == 2
    assert "train.jsonl:4: invalid JSON" in result.output


def test_dry_run_counts_rows_the_skip_policy_would_leave_out(tmp_path, tiny_model_dir):
    recipe = load_recipe(_recipe(tmp_path, tiny_model_dir, [*ROWS, {"instruction": "x", "output": 5}]), ["data.on_bad_rows=skip"])
    checked = dry_run(recipe)
    assert any("3 rows (alpaca), 1 bad row(s) would be skipped" in line for line in checked.data)
