"""``tuneforge sweep``: hyper-parameter search over a recipe with Optuna, one tuneforge run per trial.

Optuna does the searching (TPE sampler, median pruning, a SQLite study that survives a kill: run the
same command again and it continues); we only turn a trial's suggestions into recipe overrides, run
the recipe through :func:`tuneforge.recipes.train` and read the objective back from the run
directory. Each trial is an ordinary run in ``SWEEP_DIR/trial-N`` (eval, chat and export work on it),
``SWEEP_DIR/best.yaml`` is the best trial's resolved recipe, and ``trials.jsonl``, ``trials.md`` and
``trials.png`` hold every trial (parameters, state, value) as rows, a table and a plot.

Objectives: ``val_loss`` (the lowest validation loss the run logged; needs validation data, and lets
the pruner stop bad trials at each evaluation), ``train_loss``, or a score of the tuned model's
held-out evaluation (``exact_match``, ``json_fields``, ``loss``, ...; needs ``eval.data``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from transformers import TrainerCallback

from tuneforge.config.load import dump_recipe, load_recipe
from tuneforge.errors import ConfigError, TuneforgeError
from tuneforge.recipes import train
from tuneforge.runs import METRICS_FILE
from tuneforge.sweep.report import write_report
from tuneforge.sweep.space import Dimension, load_space

STUDY_DB = "study.db"
TRIALS_FILE = "trials.jsonl"
BEST_RECIPE = "best.yaml"


@dataclass
class SweepResult:
    sweep_dir: Path
    best_value: float
    best_params: dict
    best_run: Path
    trials: list[dict]


def minimise(metric: str) -> bool:
    """Losses and perplexity go down; every other score goes up."""
    return metric.endswith("loss") or metric == "perplexity"


def override(key: str, value) -> str:
    """``key=value`` that the recipe loader reads back as the same value (YAML wants ``1.0e-05``, not ``1e-05``)."""
    if isinstance(value, float):
        text = repr(value)
        if "e" in text and "." not in text.split("e")[0]:
            text = text.replace("e", ".0e", 1)
        return f"{key}={text}"
    return f"{key}={json.dumps(value) if isinstance(value, str) else value}"


def objective_value(run_dir: Path, summary: dict, metric: str) -> float:
    """The trial's score, read from what the run wrote."""
    if metric in ("val_loss", "train_loss"):
        key = "eval_loss" if metric == "val_loss" else "loss"
        rows = [json.loads(line) for line in (run_dir / METRICS_FILE).read_text(encoding="utf-8").splitlines()]
        values = [r[key] for r in rows if key in r]
        if metric == "train_loss" and summary.get("train_loss") is not None:
            return float(summary["train_loss"])
        if not values:
            raise TuneforgeError(f"{run_dir}: the run logged no {key}", hint="set data.val_fraction or data.validation for --metric val_loss")
        return float(min(values))
    tuned = (summary.get("eval") or {}).get("tuned") or {}
    if metric not in tuned:
        raise TuneforgeError(
            f"{run_dir}: the tuned model's evaluation has no score '{metric}' (has: {', '.join(sorted(tuned)) or 'none'})",
            hint="set eval.data and list the metric in eval.metrics, or use --metric val_loss",
        )
    return float(tuned[metric])


class _ReportToOptuna(TrainerCallback):
    """Hands each validation loss to the trial and stops the run when the pruner says so."""

    def __init__(self, trial) -> None:
        self.trial = trial
        self.pruned = False

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if metrics and "eval_loss" in metrics:
            self.trial.report(float(metrics["eval_loss"]), step=state.global_step)
            if self.trial.should_prune():
                self.pruned = True
                control.should_training_stop = True


def run_sweep(
    recipe_path: str | Path,
    space_path: str | Path,
    *,
    overrides: list[str] | None = None,
    trials: int,
    metric: str = "val_loss",
    sweep_dir: str | Path | None = None,
    seed: int = 0,
    prune: bool = True,
    pruner=None,
    console: Console | None = None,
) -> SweepResult:
    """Run ``trials`` trials (more on a continued study) and return the best; every trial is logged.

    ``pruner`` (an ``optuna.pruners.BasePruner``) replaces the default median pruner when ``prune``.
    """
    # lazy: optuna (and its sqlalchemy) is only needed by this command; 1.1 s to import
    import optuna

    console = console or Console(stderr=True)
    overrides = list(overrides or [])
    base = load_recipe(recipe_path, overrides)
    space = load_space(space_path, recipe_path, overrides)
    out = Path(sweep_dir or f"{base.output.dir}-sweep")
    out.mkdir(parents=True, exist_ok=True)
    if metric == "val_loss" and not (base.data.validation or base.data.val_fraction > 0):
        raise ConfigError("--metric val_loss needs validation data in the recipe", hint="set data.val_fraction=0.1 or data.validation, or pick another --metric")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name="tuneforge",
        storage=f"sqlite:///{(out / STUDY_DB).resolve()}",
        load_if_exists=True,
        direction="minimize" if minimise(metric) else "maximize",
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=(pruner or optuna.pruners.MedianPruner(n_startup_trials=2)) if prune else optuna.pruners.NopPruner(),
    )

    def objective(trial) -> float:
        return _trial(trial, recipe_path, overrides, space, out, metric, console)

    study.optimize(objective, n_trials=trials, catch=(TuneforgeError,))  # a failed trial is logged; the sweep goes on
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not done:
        rows = [json.loads(line) for line in (out / TRIALS_FILE).read_text(encoding="utf-8").splitlines()]
        write_report(out, rows, metric, minimise(metric), None)
        raise TuneforgeError(f"sweep {out}: no trial completed", hint=f"see {out / TRIALS_FILE} for each trial's state")
    best = study.best_trial
    best_run = Path(best.user_attrs["run_dir"])
    dump_recipe(load_recipe(best_run / "recipe.yaml"), out / BEST_RECIPE)
    console.print(f"[bold green]best[/] trial {best.number}: {metric} = {best.value:.6g} with {best.params} ({best_run})")
    rows = [json.loads(line) for line in (out / TRIALS_FILE).read_text(encoding="utf-8").splitlines()]
    write_report(out, rows, metric, minimise(metric), best.number)
    return SweepResult(out, float(best.value), dict(best.params), best_run, rows)


def _trial(trial, recipe_path, overrides: list[str], space: list[Dimension], out: Path, metric: str, console: Console) -> float:
    # lazy: as in run_sweep
    import optuna

    values = {dim.key: dim.suggest(trial) for dim in space}
    run_dir = out / f"trial-{trial.number}"
    trial.set_user_attr("run_dir", str(run_dir))
    recipe = load_recipe(recipe_path, [*overrides, *(override(k, v) for k, v in values.items()), f"output.dir={run_dir}", "output.overwrite=true"])
    console.print(f"[bold]trial {trial.number}[/]: {values}")
    reporter = _ReportToOptuna(trial)
    row = {"trial": trial.number, "params": values, "run_dir": str(run_dir)}
    try:
        result = train(recipe, console=console, callbacks=[reporter])
        if reporter.pruned:
            row["state"] = "pruned"
            raise optuna.TrialPruned()
        value = objective_value(result.run_dir, result.summary, metric)
        if not math.isfinite(value):
            raise TuneforgeError(f"trial {trial.number}: {metric} is {value}")
        row.update(state="complete", value=value)
        return value
    except optuna.TrialPruned:
        raise
    except TuneforgeError as exc:
        row.update(state="failed", error=str(exc))
        raise
    finally:
        with (out / TRIALS_FILE).open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(row, default=str) + "\n")
