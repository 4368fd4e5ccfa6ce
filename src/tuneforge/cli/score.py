"""``tuneforge score``: reward-model scores for (prompt, response) pairs. Thin: parses and calls serve.score."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from tuneforge.cli.errors import user_errors
from tuneforge.errors import DataError


@user_errors
def score(
    run: Annotated[
        Path, typer.Argument(help="A finished run trained with objective.type: reward.")
    ],
    data: Annotated[
        Path | None,
        typer.Option(
            "--data", help='JSONL of {"prompt", "response"} rows; default: read stdin.'
        ),
    ] = None,
    batch_size: Annotated[int, typer.Option(help="Pairs scored together.")] = 8,
) -> None:
    """Score (prompt, response) pairs with a reward model; prints each row with a `score` as JSON Lines."""
    # lazy: serve.score (torch, transformers, peft) costs 5.3 s of `tuneforge --help`, measured
    from tuneforge.serve.score import score_file

    if data is None:
        score_file(str(run), sys.stdin, sys.stdout, batch_size=batch_size)
        return
    if not data.is_file():
        raise DataError(f"--data: no such file {data}")
    with data.open(encoding="utf-8") as fh:
        score_file(str(run), fh, sys.stdout, where=str(data), batch_size=batch_size)


def register(app: typer.Typer) -> None:
    """Attach the command to the main app."""
    app.command(
        name="score",
        epilog=(
            "Examples:\n\n"
            "- `tuneforge score runs/rm --data pairs.jsonl`\n\n"
            '- `echo \'{"prompt": "Hi", "response": "Certainly! Hello."}\' | tuneforge score runs/rm`'
        ),
    )(score)
