"""The PPO-RLHF recipe (``objective.type: ppo``): a whole run, top to bottom.

TRL 1.16 removed PPO, so the trainer is tuneforge's own (train/ppo_trainer.py, objectives/ppo_loss.py).
Rows are prompts (``data.format: prompt``); ``objective.rewards`` score the completions: a reward
model trained with ``objective.type: reward`` (``{type: reward_model, run: RUN}``), reward functions,
or both, weighted. The policy is the base with the recipe's method; the value head is a zero-initialised
linear layer on its last hidden state (train/value_head.py), trained with it and saved as
``value_head.safetensors`` in the run directory and in every checkpoint (so ``--resume`` restores it).
The adapter (or model) directory is the usual one, so ``eval``, ``chat`` and ``export`` use it as any
other run's. Held-out prompts (eval.data) are answered greedily before and after and scored by the
same rewards, as in grpo.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

import torch
from rich.console import Console
from transformers import TrainerCallback

from tuneforge.config.schema import Recipe
from tuneforge.data.records import PromptRecord
from tuneforge.errors import ConfigError
from tuneforge.methods import apply_method, load_base_model, method_callbacks
from tuneforge.models.load import load_tokenizer
from tuneforge.objectives.shared_prefix import randomness_in_forward
from tuneforge.recipes.common import Run, TrainResult, fit, load_run_data, read_prompts, report_parameters, start_run
from tuneforge.recipes.grpo import evaluate_rewards, finish_rl
from tuneforge.rewards import build_scorer
from tuneforge.train.arguments import training_arguments
from tuneforge.train.callbacks import run_callbacks
from tuneforge.train.distributed import is_main_process, world_size
from tuneforge.train.ppo_trainer import load_ppo_state, make_ppo_trainer, save_ppo_state, updates_per_rollout
from tuneforge.train.rollout import render_prompts
from tuneforge.train.speed_plan import SpeedPlan, plan_speed
from tuneforge.train.value_head import ValueHead, hidden_size_of, load_value_head, save_value_head


def planned_steps(recipe: Recipe, prompts: int) -> int:
    """Optimizer steps of the run: each rollout takes batch_size x grad_accum prompts and serves ppo_epochs x num_minibatches steps."""
    t = recipe.training
    if t.max_steps:
        return t.max_steps
    return max(1, round(t.epochs * math.ceil(prompts / (t.batch_size * t.grad_accum)))) * updates_per_rollout(recipe.objective.ppo)


def ppo_speed_plan(run: Run, model, tokenizer, records: Sequence[PromptRecord]) -> SpeedPlan:
    """The speed plan over the update's rows: a prompt plus a full-length completion, num_generations rows per prompt."""
    recipe, p = run.recipe, run.recipe.objective.ppo
    prompts = [len(ids) for ids in tokenizer(render_prompts(records, tokenizer), add_special_tokens=False)["input_ids"]]
    training = recipe.training.model_copy(update={"batch_size": recipe.training.batch_size * p.num_generations})
    config = model.get_base_model().config if hasattr(model, "get_base_model") else model.config
    plan = plan_speed(
        training, recipe.method, run.precision, config, [n + p.max_completion_length for n in prompts], distributed=False,
        objective=recipe.objective.type, shared_tokens=min(prompts, default=0), randomness=randomness_in_forward(model),
    )  # fmt: skip
    if p.num_generations == 1 and plan.share_prefix:
        return replace(plan, share_prefix=False, share_prefix_reason="one completion per prompt (objective.ppo.num_generations 1): nothing to share")
    return plan


def train_ppo(
    recipe: Recipe, *, resume: bool = False, console: Console | None = None, callbacks: Sequence[TrainerCallback] = ()
) -> TrainResult:
    """Run a ppo recipe; ``callbacks`` are added to the run's own."""
    if world_size() > 1:  # the value head lives outside the DDP-wrapped model, so its gradients would not be averaged
        raise ConfigError("objective.type 'ppo' runs in one process", hint="run it with plain `tuneforge train`, not torchrun / accelerate launch")
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
    value_head = ValueHead(hidden_size_of(model))
    if run.checkpoint is not None and load_value_head(value_head, run.checkpoint):
        run.console.print(f"[bold]value head[/]: restored from {run.checkpoint}")
    report_parameters(run, model)
    args = training_arguments(recipe, run.run_dir, run.precision, has_val=False)
    all_callbacks = run_callbacks(run.run_dir, run.console, recipe.training, [*method_callbacks(model, recipe.method), *callbacks])
    trainer = make_ppo_trainer(
        recipe.objective.ppo, model, value_head, args, tokenizer, records, scorer, all_callbacks,
        epochs=recipe.training.epochs, max_steps=recipe.training.max_steps, autocast_dtype=run.precision.autocast_dtype,
    )  # fmt: skip
    state = load_ppo_state(run.checkpoint) if run.checkpoint is not None else None
    if state is not None:  # the adaptive KL weight the interrupted run had reached
        trainer.kl_coef = float(state["kl_coef"])
    fitted = fit(run, trainer, ppo_speed_plan(run, model, tokenizer, records))
    if is_main_process():
        save_ppo_state({"kl_coef": trainer.kl_coef}, run.run_dir)
        save_value_head(trainer.value_head, run.run_dir)  # beside the adapter / model directory, which stays the usual one
    return finish_rl(run, trainer, fitted, tokenizer, held_out, scorer, base)
