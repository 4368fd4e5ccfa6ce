"""One readable recipe per objective family, and the public entry point that picks it.

- :mod:`tuneforge.recipes.sft`: sft and pretrain;
- :mod:`tuneforge.recipes.preference`: dpo, orpo, simpo, kto;
- :mod:`tuneforge.recipes.reward`: reward models.

Each recipe reads top to bottom (data -> model + method -> trainer -> train -> save -> evaluate)
over the shared steps in :mod:`tuneforge.recipes.common`. Tests, benchmarks and the CLI compose runs
through :func:`train` (extra ``callbacks`` instead of patching) and :func:`dry_run`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from rich.console import Console
from transformers import TrainerCallback

from tuneforge.config.schema import Recipe
from tuneforge.recipes.common import TrainResult
from tuneforge.recipes.dry_run import DryRun, dry_run
from tuneforge.recipes.preference import train_preference
from tuneforge.recipes.reward import train_reward
from tuneforge.recipes.sft import train_sft

RECIPES: dict[str, Callable[..., TrainResult]] = {
    "sft": train_sft,
    "pretrain": train_sft,
    "dpo": train_preference,
    "orpo": train_preference,
    "simpo": train_preference,
    "kto": train_preference,
    "reward": train_reward,
}


def train(
    recipe: Recipe, *, resume: bool = False, console: Console | None = None, callbacks: Sequence[TrainerCallback] = ()
) -> TrainResult:
    """Run a whole recipe with its family's recipe; return the run directory, summary and eval results.

    ``callbacks`` (transformers ``TrainerCallback`` objects) are added after the run's own.
    """
    return RECIPES[recipe.objective.type](recipe, resume=resume, console=console, callbacks=callbacks)


__all__ = ["RECIPES", "DryRun", "TrainResult", "dry_run", "train"]
