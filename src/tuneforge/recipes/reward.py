"""The reward-model recipe: a scalar-head model trained on preference pairs (Bradley-Terry), top to bottom.

The base loads as ``AutoModelForSequenceClassification`` with one zero-initialised output
(:mod:`tuneforge.objectives.reward`); the method goes on the backbone and the head always trains.
A reward model does not generate, so there is no before/after generation eval: its validation
reports pair accuracy. ``tuneforge score`` uses the result.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from rich.console import Console
from transformers import TrainerCallback

from tuneforge.config.schema import Recipe
from tuneforge.methods import method_callbacks
from tuneforge.models.load import load_tokenizer
from tuneforge.objectives.reward import apply_reward_method, load_reward_model
from tuneforge.recipes.common import (
    TrainResult,
    build_run_examples,
    finish,
    fit,
    load_run_data,
    report_parameters,
    speed_plan_for,
    start_run,
)
from tuneforge.recipes.preference import read_preference
from tuneforge.train.arguments import training_arguments
from tuneforge.train.callbacks import run_callbacks
from tuneforge.train.preference_trainer import make_preference_trainer


def train_reward(
    recipe: Recipe, *, resume: bool = False, console: Console | None = None, callbacks: Sequence[TrainerCallback] = ()
) -> TrainResult:
    """Run a reward recipe; ``callbacks`` are added to the run's own."""
    run = start_run(recipe, resume, console)
    if recipe.eval.data:
        run.console.print("[yellow]eval.data is ignored for objective.type reward (a reward model does not generate); its validation reports pair accuracy[/]")
    data = load_run_data(run, read_preference, read_eval=None, preference=True)

    run.console.print(f"[bold]model[/]: {recipe.model.name}")
    tokenizer = load_tokenizer(recipe.model.name)
    train_ex, val_ex = build_run_examples(run, data, tokenizer)
    model = load_reward_model(recipe.model.name, dtype=torch.float32, pad_token_id=tokenizer.pad_token_id)
    model.config.use_cache = False
    model = apply_reward_method(model, recipe.method)
    report_parameters(run, model)

    args = training_arguments(recipe, run.run_dir, run.precision, has_val=bool(val_ex))
    trainer = make_preference_trainer(
        recipe.objective, model, args, tokenizer, train_ex, val_ex, run_callbacks(run.run_dir, run.console, recipe.training, [*method_callbacks(model, recipe.method), *callbacks]),
        run_dir=run.run_dir, max_length=recipe.data.max_length, console=run.console,
    )  # fmt: skip
    fitted = fit(run, trainer, speed_plan_for(run, model, train_ex, trainer))
    return finish(run, trainer, fitted, tokenizer, [], [])
