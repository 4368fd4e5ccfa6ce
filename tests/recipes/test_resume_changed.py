"""``--resume`` with a recipe that differs from the run's own is refused, naming the keys, unless allowed."""

from __future__ import annotations

import pytest

from tuneforge.config.load import dump_recipe, load_recipe
from tuneforge.config.schema import Recipe
from tuneforge.errors import TuneforgeError
from tuneforge.recipes import train
from tuneforge.runs import RECIPE_FILE, recipe_changes


def _saved_run(tmp_path, **training) -> Recipe:
    recipe = Recipe(data={"train": "train.jsonl"}, training={"learning_rate": 1e-4, **training}, output={"dir": str(tmp_path / "run")})
    (tmp_path / "run").mkdir()
    dump_recipe(recipe, tmp_path / "run" / RECIPE_FILE)
    return recipe


def test_same_recipe_has_no_changes(tmp_path):
    recipe = _saved_run(tmp_path)
    assert recipe_changes(tmp_path / "run", load_recipe(tmp_path / "run" / RECIPE_FILE)) == []


def test_changed_keys_are_named_and_harmless_ones_ignored(tmp_path):
    recipe = _saved_run(tmp_path)
    changed = recipe.model_copy(deep=True)
    changed.training.learning_rate = 3e-4
    changed.method.lora.r = 32
    changed.training.threads = 1  # changes neither weights nor losses
    changed.output.overwrite = True
    assert recipe_changes(tmp_path / "run", changed) == ["method.lora.r", "training.learning_rate"]


def test_resume_refuses_a_changed_recipe_before_loading_anything(tmp_path):
    recipe = _saved_run(tmp_path)
    changed = recipe.model_copy(deep=True)
    changed.training.learning_rate = 3e-4
    with pytest.raises(TuneforgeError) as info:
        train(changed, resume=True)
    message = str(info.value)
    assert "training.learning_rate: 0.0001 -> 0.0003" in message
    assert "--allow-changes" in info.value.hint


def test_unreadable_saved_recipe_is_a_clear_error(tmp_path):
    recipe = _saved_run(tmp_path)
    (tmp_path / "run" / RECIPE_FILE).write_text("training: {learning_rate: -1}\n", encoding="utf-8")
    with pytest.raises(TuneforgeError, match="cannot be read back"):
        recipe_changes(tmp_path / "run", recipe)
