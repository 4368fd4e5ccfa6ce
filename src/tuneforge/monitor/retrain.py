"""``tuneforge monitor --retrain RECIPE``: start the given recipe when a rule fired, through recipes.train."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from tuneforge.config.load import load_recipe
from tuneforge.errors import TuneforgeError
from tuneforge.recipes import train


def retrain(recipe: Path, console: Console | None = None) -> Path:
    """Train ``recipe`` (a YAML file) and return the new run directory."""
    if not recipe.is_file():
        raise TuneforgeError(f"--retrain: no such recipe {recipe}", hint="pass the recipe YAML to train, e.g. runs/my-run/recipe.yaml with a new output.dir")
    return train(load_recipe(recipe), console=console).run_dir
