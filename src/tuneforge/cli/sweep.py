"""``tuneforge sweep``: hyper-parameter search over a recipe. Thin: parses and calls sweep.study."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tuneforge.cli.errors import err, user_errors


@user_errors
def sweep(
    recipe: Annotated[Path, typer.Argument(help="Recipe YAML the trials start from.")],
    overrides: Annotated[list[str] | None, typer.Argument(help="Dotted overrides applied to every trial.")] = None,
    space: Annotated[Path, typer.Option("--space", help="YAML search space: recipe key -> {low, high, log} or {choices: [...]}.")] = ...,
    trials: Annotated[int, typer.Option(min=1, help="Trials to run (added to those a continued study already has).")] = 10,
    metric: Annotated[str, typer.Option(help="val_loss, train_loss, or a tuned eval score (exact_match, json_fields, ...).")] = "val_loss",
    out: Annotated[Path | None, typer.Option(help="Sweep directory (default: output.dir + '-sweep'); rerun to continue it.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the TPE sampler.")] = 0,
    prune: Annotated[bool, typer.Option("--prune/--no-prune", help="Stop trials whose validation loss is worse than the median at the same step.")] = True,
) -> None:
    """Search hyper-parameters with Optuna: one run per trial, the best recipe written to best.yaml."""
    # lazy: the training stack takes about 10 s to import (cli/main.py docstring)
    from tuneforge.sweep.study import run_sweep

    result = run_sweep(recipe, space, overrides=overrides or [], trials=trials, metric=metric, sweep_dir=out, seed=seed, prune=prune, console=err)
    for row in result.trials:
        value = f"{row['value']:.6g}" if "value" in row else row.get("state", "?")
        typer.echo(f"trial {row['trial']}: {value}  {row['params']}")
    typer.echo(f"best: {result.best_value:.6g} {result.best_params} -> {result.sweep_dir / 'best.yaml'}")


def register(app: typer.Typer) -> None:
    """Attach the command to the main app."""
    app.command(
        name="sweep",
        epilog=(
            "Example:\n\n"
            "- `tuneforge sweep examples/quickstart/recipe.yaml --space sweep.yaml --trials 8 --metric val_loss`\n\n"
            "sweep.yaml: `training.learning_rate: {low: 1.0e-5, high: 1.0e-3, log: true}` and `method.lora.r: {choices: [8, 16, 32]}`"
        ),
    )(sweep)
