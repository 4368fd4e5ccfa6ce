"""The sft, pretrain, cft and s3ft recipe: a whole supervised fine-tuning (or continued pretraining) run, top to bottom.

sft trains the assistant turns of alpaca / messages data; pretrain trains every token of raw text
cut into ``data.max_length`` chunks; cft trains the same text behind untrained learning prompts
(recipes/cft.py); s3ft trains the rows its ``map_data`` step rewrote with the base model's own answers
(recipes/s3ft.py). training.ewc adds the EWC penalty and can save this run's Fisher (train/ewc.py). All use the token-normalised causal LM loss with the output
head on trained positions only (:class:`~tuneforge.train.trainer.TuneforgeTrainer`).

The base model is evaluated before the method is applied (identical outputs for identity-at-init
methods, and no adapter to disable), the tuned one after training, both on the same examples.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from rich.console import Console
from transformers import TrainerCallback

from tuneforge.config.schema import Recipe
from tuneforge.methods import (
    apply_method,
    load_base_model,
    loraplus_ratio,
    method_callbacks,
    planned_optimizer_steps,
)
from tuneforge.models.load import load_tokenizer
from tuneforge.recipes.cft import build_cft_run_examples
from tuneforge.recipes.common import (
    Run,
    RunData,
    TrainResult,
    build_run_examples,
    evaluate_base,
    finish,
    fit,
    load_run_data,
    read_chat,
    read_eval_chat,
    report_parameters,
    speed_plan_for,
    start_run,
)
from tuneforge.train.arguments import training_arguments
from tuneforge.train.callbacks import run_callbacks
from tuneforge.train.ewc import ewc_regularisers, save_fisher_if_asked
from tuneforge.train.trainer import make_trainer


MapData = Callable[[Run, RunData, torch.nn.Module, object], RunData]  # (run, data, base model, tokenizer) -> data


def train_sft(
    recipe: Recipe,
    *,
    resume: bool = False,
    console: Console | None = None,
    callbacks: Sequence[TrainerCallback] = (),
    map_data: MapData | None = None,
) -> TrainResult:
    """Run an sft, pretrain or cft recipe (s3ft through ``map_data``); ``callbacks`` are added to the run's own.

    ``map_data`` rewrites the training rows with the base model before any example is built (s3ft
    picks each row's target from the model's own answers, recipes/s3ft.py); the rest of the run,
    EWC, LoRA+ and packing included, is the same for every objective that trains this way.
    """
    run = start_run(recipe, resume, console)
    data = load_run_data(run, read_chat, read_eval=read_eval_chat)  # bad rows stop the run before any model loads

    run.console.print(f"[bold]model[/]: {recipe.model.name}")
    tokenizer = load_tokenizer(recipe.model.name)
    model = None
    if map_data is not None:  # the rows need the model's answers, so it loads first
        model = load_base_model(recipe.model.name, recipe.method, dtype=torch.float32)
        data = map_data(run, data, model, tokenizer)
    build = build_cft_run_examples if recipe.objective.type == "cft" else build_run_examples
    train_ex, val_ex = build(run, data, tokenizer)
    if model is None:  # qlora: the 4-bit base is loaded directly, never in full precision first
        model = load_base_model(recipe.model.name, recipe.method, dtype=torch.float32)
    model.config.use_cache = False  # packed/padded training must build the full attention mask
    evals = evaluate_base(run, model, tokenizer, data.eval_records)

    t = recipe.training
    steps = planned_optimizer_steps(len(train_ex), t.batch_size, t.grad_accum, t.epochs, t.max_steps)
    model = apply_method(model, recipe.method, total_steps=steps)  # adalora schedules its ranks over the steps
    report_parameters(run, model)
    regularisers = ewc_regularisers(t, model)  # training.ewc.from_run; may move the weights to the earlier task's

    args = training_arguments(recipe, run.run_dir, run.precision, has_val=bool(val_ex), loraplus_lr_ratio=loraplus_ratio(recipe.method))
    all_callbacks = run_callbacks(run.run_dir, run.console, t, [*method_callbacks(model, recipe.method), *callbacks])
    trainer = make_trainer(model, args, tokenizer, train_ex, val_ex, all_callbacks, packing=t.packing, regularisers=regularisers)
    fitted = fit(run, trainer, speed_plan_for(run, model, train_ex, trainer))
    if run.main and save_fisher_if_asked(run.run_dir, t, trainer.model, train_ex):
        run.console.print(f"[bold]ewc[/]: Fisher of {min(len(train_ex), t.ewc.fisher_examples)} examples -> {run.run_dir / 'ewc'}")
    return finish(run, trainer, fitted, tokenizer, evals, data.eval_records)
