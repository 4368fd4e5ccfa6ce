"""One readable recipe per objective family, and the public entry point that picks it.

- :mod:`tuneforge.recipes.sft`: sft and pretrain;
- :mod:`tuneforge.recipes.preference`: dpo, orpo, simpo, kto;
- :mod:`tuneforge.recipes.reward`: reward models;
- :mod:`tuneforge.recipes.ppo`: ppo (PPO-RLHF with a value head);
- :mod:`tuneforge.recipes.rlaif`: rlaif (an AI judge labels the policy's sample pairs for DPO).

Each recipe reads top to bottom (data -> model + method -> trainer -> train -> save -> evaluate)
over the shared steps in :mod:`tuneforge.recipes.common`. Tests, benchmarks and the CLI compose runs
through :func:`train` (extra ``callbacks`` instead of patching) and :func:`dry_run`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from rich.console import Console
from transformers import TrainerCallback

from tuneforge.config.schema import Recipe
from tuneforge.errors import TuneforgeError
from tuneforge.recipes.common import TrainResult
from tuneforge.recipes.dry_run import DryRun, dry_run
from tuneforge.recipes.grpo import train_grpo
from tuneforge.recipes.nlft import train_nlft
from tuneforge.recipes.ppo import train_ppo
from tuneforge.recipes.preference import train_preference
from tuneforge.recipes.reward import train_reward
from tuneforge.recipes.rft import train_rft
from tuneforge.recipes.rlaif import train_rlaif
from tuneforge.recipes.s3ft import train_s3ft
from tuneforge.recipes.sft import train_sft
from tuneforge.runs import RECIPE_FILE, describe_changes, recipe_changes

RECIPES: dict[str, Callable[..., TrainResult]] = {
    "sft": train_sft,
    "pretrain": train_sft,
    "cft": train_sft,
    "dpo": train_preference,
    "orpo": train_preference,
    "simpo": train_preference,
    "kto": train_preference,
    "rft": train_rft,
    "reward": train_reward,
    "grpo": train_grpo,
    "rloo": train_grpo,
    "ppo": train_ppo,
    "rlaif": train_rlaif,
    "nlft": train_nlft,
    "s3ft": train_s3ft,
}


def train(
    recipe: Recipe,
    *,
    resume: bool = False,
    allow_changes: bool = False,
    console: Console | None = None,
    callbacks: Sequence[TrainerCallback] = (),
) -> TrainResult:
    """Run a whole recipe with its family's recipe; return the run directory, summary and eval results.

    ``resume`` continues the run in ``output.dir`` from its newest complete checkpoint; it refuses
    when the recipe differs from the one the run started with (naming the keys) unless
    ``allow_changes``. ``callbacks`` (transformers ``TrainerCallback`` objects) are added after the run's own.
    """
    run_dir = Path(recipe.output.dir)
    if resume and not allow_changes and (run_dir / RECIPE_FILE).is_file():
        changed = recipe_changes(run_dir, recipe)
        if changed:
            raise TuneforgeError(
                f"--resume: the recipe differs from the one {run_dir} started with, in {len(changed)} key(s):\n"
                + describe_changes(run_dir, recipe, changed),
                hint="resume with the run's own recipe (tuneforge train RUN/recipe.yaml --resume), or pass --allow-changes "
                "to continue under the new values (the run is then neither the old one nor a fresh one)",
            )
    return RECIPES[recipe.objective.type](recipe, resume=resume, console=console, callbacks=callbacks)


__all__ = ["RECIPES", "DryRun", "TrainResult", "dry_run", "train"]
