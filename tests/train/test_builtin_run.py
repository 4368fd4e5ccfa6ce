"""The quickstart recipe, shortened, on the real built-in model (slow: run with -m slow)."""

import json
from pathlib import Path

import pytest
import torch

from tuneforge.config import load_recipe
from tuneforge.recipes import train

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_quickstart_recipe_runs_on_builtin_model(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    recipe = load_recipe(
        ROOT / "examples/quickstart/recipe.yaml",
        ["training.max_steps=4", "training.logging_steps=1", "eval.limit=4", "eval.max_new_tokens=8", f"output.dir={tmp_path / 'run'}"],
    )
    result = train(recipe)
    summary = json.loads((result.run_dir / "summary.json").read_text())
    assert summary["steps"] == 4 and summary["train_tokens_per_s"] > 0
    assert set(result.eval_results["models"]) == {"base", "tuned"}
    assert (result.run_dir / "eval" / "report.html").is_file()
    rows = [json.loads(x) for x in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in rows if "loss" in r]
    assert losses and all(torch.isfinite(torch.tensor(v)) for v in losses)
