"""``tuneforge advise``: data size, a suggested LoRA rank, and per method trainable parameters and memory."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from tuneforge.cli.errors import user_errors
from tuneforge.errors import ConfigError

err = Console(stderr=True)


def register(parent: typer.Typer) -> None:
    """Attach the command to the main app."""
    parent.command(
        "advise",
        epilog=(
            "Examples:\n\n"
            "- `tuneforge advise --model smollm2-135m-instruct --data examples/quickstart/train.jsonl`\n\n"
            "- `tuneforge advise --model smollm2-135m-instruct --data train.jsonl training.batch_size=4 data.max_length=512 --methods lora,dora,full`\n\n"
            "- `tuneforge advise --recipe examples/quickstart/recipe.yaml --measure` (also runs 3 real steps and compares)"
        ),
    )(advise)


@user_errors
def advise(
    overrides: Annotated[
        list[str] | None,
        typer.Argument(
            help="Recipe overrides, e.g. training.batch_size=4 data.max_length=512 method.lora.r=8."
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            help="Base model (built-in name, local dir, .gguf, hub id); default: the recipe's."
        ),
    ] = None,
    data: Annotated[
        Path | None,
        typer.Option(help="Training data file; default: the recipe's data.train."),
    ] = None,
    recipe: Annotated[
        Path | None,
        typer.Option(help="Start from this recipe instead of the defaults."),
    ] = None,
    methods: Annotated[
        str | None,
        typer.Option(help="Comma-separated methods to size (default: every method)."),
    ] = None,
    measure: Annotated[
        bool,
        typer.Option(
            "--measure",
            help="Also train the recipe's method for a few real steps and compare the peak memory.",
        ),
    ] = False,
    measure_steps: Annotated[int, typer.Option(help="Steps of the measured run.")] = 3,
) -> None:
    """Size a fine-tune before running it: examples and tokens, a LoRA rank, parameters and memory per method."""
    # lazy: tuneforge.advise (torch, transformers) costs 6.7 s of `tuneforge --help`, measured
    from tuneforge.advise import advise as run_advise
    from tuneforge.advise import render
    from tuneforge.config.load import load_recipe, read_recipe_file

    base = read_recipe_file(recipe) if recipe else {}
    if model:
        base.setdefault("model", {})["name"] = model
    if data:
        base.setdefault("data", {})["train"] = str(data)
    if not base.get("data", {}).get("train") and not any(
        o.startswith("data.train=") for o in overrides or []
    ):
        raise ConfigError(
            "no training data", hint="pass --data FILE (or --recipe with data.train)"
        )
    rec = load_recipe(base=base, overrides=overrides or [])
    names = [m.strip() for m in methods.split(",") if m.strip()] if methods else None
    print(
        render(
            run_advise(
                rec,
                methods=names,
                measure=measure,
                measure_steps=measure_steps,
                progress=lambda line: err.print(line, highlight=False),
            )
        )
    )
