"""The online-RL recipe of grpo and rloo: a whole run, top to bottom.

Rows are prompts (``data.format: prompt``, :mod:`tuneforge.data.prompts`); the recipe's rewards
(``objective.rewards``) become one scorer (:func:`tuneforge.rewards.build_scorer`) that the trainer
calls on each rollout. eval.data holds held-out prompts: the model answers them greedily before and
after training and the same rewards score the answers (mean reward per function, accuracy of the
verifier rewards), written to eval/results.json and summary.json. There is no validation loss.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence

import torch
from rich.console import Console
from transformers import TrainerCallback

from tuneforge.config.schema import Recipe
from tuneforge.data.records import PromptRecord
from tuneforge.methods import apply_method, load_base_model, method_callbacks, save_method, saved_dir_name
from tuneforge.models.load import load_tokenizer
from tuneforge.objectives.shared_prefix import randomness_in_forward
from tuneforge.evaluate.reward_report import write_reward_report
from tuneforge.observe.plots import plot_loss, plot_rewards
from tuneforge.recipes.common import Fitted, Run, TrainResult, fit, load_run_data, read_prompts, report_parameters, start_run, write_summary
from tuneforge.rewards import build_scorer
from tuneforge.rewards.evaluate import evaluate_prompts
from tuneforge.runs import METRICS_FILE
from tuneforge.train.arguments import training_arguments
from tuneforge.train.callbacks import run_callbacks
from tuneforge.train.distributed import save_final_model, world_size
from tuneforge.train.grpo_trainer import make_grpo_trainer
from tuneforge.train.rollout import render_prompts
from tuneforge.train.speed_plan import SpeedPlan, plan_speed, uncompiled



def planned_steps(recipe: Recipe, prompts: int) -> int:
    """Optimizer steps of the run: each takes batch_size x grad_accum prompts, and each rollout serves num_iterations."""
    t, g = recipe.training, recipe.objective.grpo
    if t.max_steps:
        return t.max_steps
    return max(1, round(t.epochs * math.ceil(prompts / (t.batch_size * t.grad_accum)))) * g.num_iterations


def rl_speed_plan(run: Run, model, tokenizer, records: Sequence[PromptRecord]) -> SpeedPlan:
    """The speed plan over the update's rows: a prompt plus a full-length completion, G rows per prompt."""
    recipe, g = run.recipe, run.recipe.objective.grpo
    prompts = [len(ids) for ids in tokenizer(render_prompts(records, tokenizer), add_special_tokens=False)["input_ids"]]
    training = recipe.training.model_copy(update={"batch_size": recipe.training.batch_size * g.num_generations})
    config = model.get_base_model().config if hasattr(model, "get_base_model") else model.config
    return plan_speed(
        training, recipe.method, run.precision, config, [n + g.max_completion_length for n in prompts], distributed=world_size() > 1,
        objective=recipe.objective.type, shared_tokens=min(prompts, default=0), randomness=randomness_in_forward(model),
    )  # fmt: skip


def evaluate_rewards(run: Run, label: str, model, tokenizer, records, scorer) -> dict | None:
    """Greedy answers to the held-out prompts, scored by the run's rewards (printed)."""
    if not records or not run.main:
        return None
    run.console.print(f"[bold]evaluating {label} model[/] on {len(records)} held-out prompts")
    e = run.recipe.eval
    with uncompiled():
        scores = evaluate_prompts(
            model, tokenizer, records, scorer, max_new_tokens=e.max_new_tokens, batch_size=e.batch_size, autocast_dtype=run.precision.autocast_dtype
        )
    shown = {k: v for k, v in scores.items() if isinstance(v, (int, float))}
    run.console.print(f"  {label}: " + ", ".join(f"{k} {v:.4f}" for k, v in shown.items()))
    return scores


def train_grpo(
    recipe: Recipe, *, resume: bool = False, console: Console | None = None, callbacks: Sequence[TrainerCallback] = ()
) -> TrainResult:
    """Run a grpo or rloo recipe; ``callbacks`` are added to the run's own."""
    run = start_run(recipe, resume, console)
    data = load_run_data(run, read_prompts, read_eval=None)
    records = list(data.train.records)
    held_out = list(read_prompts(recipe.eval.data, recipe).records)[: recipe.eval.limit] if recipe.eval.data else []
    run.train_examples = len(records)
    run.console.print(f"[bold]model[/]: {recipe.model.name}")
    tokenizer = load_tokenizer(recipe.model.name)
    scorer = build_scorer(recipe.objective.rewards, console=run.console, tokenizer=tokenizer)  # prompts reach user functions rendered
    run.console.print(f"[bold]data[/]: {len(records)} prompts, {len(held_out)} held out; rewards: {', '.join(scorer.names)}")
    model = load_base_model(recipe.model.name, recipe.method, dtype=torch.float32)
    model.config.use_cache = False  # the update's padded rows need the full mask; generation turns the cache on itself
    base = evaluate_rewards(run, "base", model, tokenizer, held_out, scorer) if recipe.eval.before else None

    model = apply_method(model, recipe.method, total_steps=planned_steps(recipe, len(records)))
    report_parameters(run, model)
    args = training_arguments(recipe, run.run_dir, run.precision, has_val=False)
    all_callbacks = run_callbacks(run.run_dir, run.console, recipe.training, [*method_callbacks(model, recipe.method), *callbacks])
    trainer = make_grpo_trainer(
        recipe.objective.grpo, recipe.objective.type, model, args, tokenizer, records, scorer, all_callbacks,
        epochs=recipe.training.epochs, max_steps=recipe.training.max_steps, autocast_dtype=run.precision.autocast_dtype,
    )  # fmt: skip
    fitted = fit(run, trainer, rl_speed_plan(run, model, tokenizer, records))
    return finish_rl(run, trainer, fitted, tokenizer, held_out, scorer, base)


def finish_rl(run: Run, trainer, fitted: Fitted, tokenizer, held_out, scorer, base: dict | None) -> TrainResult:
    """Save the final weights, plot the loss and the rewards, score the tuned model on the held-out prompts
    (eval/results.json and eval/report.md), write summary.json."""
    recipe = run.recipe
    final_dir = run.run_dir / saved_dir_name(recipe.method)
    save_final_model(trainer, final_dir, lambda: save_method(trainer.model, final_dir, recipe.method))
    if not run.main:
        return TrainResult(run.run_dir, {"steps": trainer.state.global_step}, None)
    tokenizer.save_pretrained(str(final_dir))
    run.console.print(f"[bold]saved[/] {final_dir}")
    plots = {
        "loss": plot_loss(run.run_dir / METRICS_FILE, run.run_dir / "plots" / "loss.png"),
        "rewards": plot_rewards(run.run_dir / METRICS_FILE, run.run_dir / "plots" / "rewards.png"),
    }
    tuned = evaluate_rewards(run, "tuned", trainer.model, tokenizer, held_out, scorer)
    results = None
    if tuned is not None:
        results = {"data": str(recipe.eval.data), "models": {k: v for k, v in (("base", base), ("tuned", tuned)) if v is not None}}
        (run.run_dir / "eval").mkdir(parents=True, exist_ok=True)
        (run.run_dir / "eval" / "results.json").write_text(json.dumps(results, indent=2))
        report = write_reward_report(recipe.objective.type, results, plots, run.run_dir)
        run.console.print(f"[bold]report[/]: {report}")
    summary = write_summary(run, trainer, fitted, results)
    run.console.print(f"[bold green]done[/] in {summary['wall_seconds']:.0f}s: {summary['steps']} steps -> {run.run_dir}")
    return TrainResult(run.run_dir, summary, results)
