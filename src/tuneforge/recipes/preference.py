"""The preference recipe (dpo with all its losses, orpo, simpo, kto): a whole run, top to bottom.

Rows are prompt/chosen/rejected pairs (kto: prompt/completion/label); each side is rendered with
the chat template and only the final answer is labelled (:mod:`tuneforge.data.preference_examples`).
The reference model is the base with the adapter disabled (peft), a frozen copy (full / freeze), or
log-probs computed once before training; :mod:`tuneforge.train.preference_trainer` picks the
cheapest correct one. eval.data is chat data: the policy is evaluated before and after as in sft.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from rich.console import Console
from transformers import TrainerCallback

from tuneforge.config.schema import Recipe
from tuneforge.data.preference import load_preference_records
from tuneforge.data.records import LoadedData
from tuneforge.methods import apply_method, load_base_model, method_callbacks, planned_optimizer_steps
from tuneforge.models.load import load_tokenizer
from tuneforge.recipes.common import (
    TrainResult,
    build_run_examples,
    evaluate_base,
    finish,
    fit,
    load_run_data,
    read_eval_chat,
    report_parameters,
    speed_plan_for,
    start_run,
)
from tuneforge.train.arguments import training_arguments
from tuneforge.train.callbacks import run_callbacks
from tuneforge.train.preference_trainer import make_preference_trainer


def read_preference(path: str, recipe: Recipe) -> LoadedData:
    """prompt/chosen/rejected (or KTO prompt/completion/label) rows, with the recipe's bad-row policy."""
    return load_preference_records(path, recipe.data.format, on_bad_rows=recipe.data.on_bad_rows, system_prompt=recipe.data.system_prompt)


def train_preference(
    recipe: Recipe, *, resume: bool = False, console: Console | None = None, callbacks: Sequence[TrainerCallback] = ()
) -> TrainResult:
    """Run a dpo, orpo, simpo or kto recipe; ``callbacks`` are added to the run's own."""
    run = start_run(recipe, resume, console)
    data = load_run_data(run, read_preference, read_eval=read_eval_chat, preference=True)

    run.console.print(f"[bold]model[/]: {recipe.model.name}")
    tokenizer = load_tokenizer(recipe.model.name)
    train_ex, val_ex = build_run_examples(run, data, tokenizer)
    model = load_base_model(recipe.model.name, recipe.method, dtype=torch.float32)
    model.config.use_cache = False  # padded training must build the full attention mask
    evals = evaluate_base(run, model, tokenizer, data.eval_records)

    t = recipe.training
    steps = planned_optimizer_steps(len(train_ex), t.batch_size, t.grad_accum, t.epochs, t.max_steps)
    model = apply_method(model, recipe.method, total_steps=steps)
    report_parameters(run, model)

    args = training_arguments(recipe, run.run_dir, run.precision, has_val=bool(val_ex))
    all_callbacks = run_callbacks(run.run_dir, run.console, t, [*method_callbacks(model, recipe.method), *callbacks])
    trainer = make_preference_trainer(
        recipe.objective, model, args, tokenizer, train_ex, val_ex, all_callbacks,
        run_dir=run.run_dir, max_length=recipe.data.max_length, console=run.console,
    )  # fmt: skip
    fitted = fit(run, trainer, speed_plan_for(run, model, train_ex, trainer))
    return finish(run, trainer, fitted, tokenizer, evals, data.eval_records)
