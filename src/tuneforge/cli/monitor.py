"""``tuneforge monitor``: should the deployed run be retrained? Thin: parses options and calls monitor.check."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tuneforge.cli.errors import err, user_errors


@user_errors
def monitor(
    run: Annotated[Path, typer.Argument(help="The deployed run directory (its eval/results.json and data.train are the reference).")],
    metrics: Annotated[str | None, typer.Option(help="The server's /metrics URL, or a file saved from it.")] = None,
    api_key: Annotated[str | None, typer.Option("--api-key", envvar="TUNEFORGE_API_KEY", help="API key for --metrics on a server that has one.")] = None,
    feedback: Annotated[Path | None, typer.Option(help="Feedback log (default: RUN/serve/feedback.jsonl).")] = None,
    prompts: Annotated[Path | None, typer.Option(help="Prompt log written by `tuneforge serve --prompt-log` (input drift).")] = None,
    eval_dir: Annotated[list[Path] | None, typer.Option("--eval", help="A later eval of the run (`tuneforge eval RUN --data FRESH --out DIR`); the last one given is current.")] = None,
    train_data: Annotated[Path | None, typer.Option(help="Training data to compare prompts with (default: the run's data.train).")] = None,
    model: Annotated[str | None, typer.Option(help="Only feedback and prompts of this served model name.")] = None,
    max_metric_drop: Annotated[float, typer.Option(help="Retrain when the eval metric is this much (relative) worse than the deployed run's.")] = 0.05,
    max_satisfaction_drop: Annotated[float, typer.Option(help="Retrain when the thumbs-up share falls by more than this (absolute).")] = 0.10,
    retrain: Annotated[Path | None, typer.Option(help="Recipe to train when a rule fires.")] = None,
) -> None:
    """Say whether to retrain: eval metric down, satisfaction down, or prompts drifted from the training data."""
    # lazy: monitor.check reads the data toolkit and prometheus-client; retrain imports the training stack (cli/main.py)
    from tuneforge.monitor.check import MonitorInputs, Thresholds, check

    given = MonitorInputs(run, metrics, api_key, feedback, prompts, list(eval_dir or []), train_data, model)
    report = check(given, Thresholds(max_metric_drop=max_metric_drop, max_satisfaction_drop=max_satisfaction_drop))
    for note in report.notes:
        typer.echo(note)
    for trigger in report.triggers:
        typer.echo(f"RETRAIN ({trigger.rule}): {trigger.message}")
    if not report.retrain:
        typer.echo("decision: keep the deployed run")
        return
    typer.echo(f"decision: retrain ({len(report.triggers)} rule(s) fired)")
    if retrain is not None:
        # lazy: the training stack costs about 10 s (cli/main.py)
        from tuneforge.monitor.retrain import retrain as start

        typer.echo(f"retrained: {start(retrain, console=err)}")


def register(app: typer.Typer) -> None:
    """Attach the command to the main app."""
    app.command(
        name="monitor",
        epilog=(
            "Examples:\n\n"
            "- `tuneforge monitor runs/support --metrics http://127.0.0.1:8000/metrics`\n\n"
            "- `tuneforge monitor runs/support --eval eval-week12 --prompts prompts.jsonl --retrain recipes/support.yaml`"
        ),
    )(monitor)
