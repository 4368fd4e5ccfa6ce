"""``tuneforge adapters``: bundle several adapter runs on one base, and show what a bundle holds."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from tuneforge.cli.errors import user_errors

app = typer.Typer(
    name="adapters",
    help="Several task adapters on one base: bundle runs, then pick one with --adapter or mix them with --weights.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)
err = Console(stderr=True)


def register(parent: typer.Typer) -> None:
    """Attach the group to the main app."""
    parent.add_typer(app, name="adapters")


@app.command(
    "bundle",
    epilog=(
        "Examples:\n\n"
        "- `tuneforge adapters bundle support=runs/support legal=runs/legal -o bundles/desk`\n\n"
        "- then: `tuneforge chat bundles/desk --adapter legal`, "
        "`tuneforge eval bundles/desk --adapter support --data test.jsonl`, "
        "`tuneforge export bundles/desk --weights support=0.7,legal=0.3 --merge exports/mix`"
    ),
)
@user_errors
def bundle(
    runs: Annotated[
        list[str],
        typer.Argument(
            help="NAME=RUN_DIR for each finished adapter run (same base model and tokenizer)."
        ),
    ],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Bundle directory to write.")
    ],
    default: Annotated[
        str | None,
        typer.Option(help="Adapter used when none is chosen (default: the first)."),
    ] = None,
) -> None:
    """Bundle adapter runs trained on one base into a directory that chat/eval/export understand."""
    # lazy: adapters.bundle (torch, peft, transformers) costs 7.6 s of `tuneforge --help`, measured
    from tuneforge.adapters.bundle import parse_named_runs, write_bundle

    info = write_bundle(parse_named_runs(runs), out, default=default)
    err.print(
        f"[bold green]bundled[/] {len(info.adapters)} adapters on {info.base_model} -> {out} (default: {info.default})"
    )


@app.command("show", epilog="Example:\n\n- `tuneforge adapters show bundles/desk`")
@user_errors
def show(
    bundle_dir: Annotated[Path, typer.Argument(help="An adapter bundle directory.")],
) -> None:
    """List a bundle's base model and adapters."""
    # lazy: adapters.bundle (torch, peft, transformers) costs 7.6 s of `tuneforge --help`, measured
    from tuneforge.adapters.bundle import read_bundle

    info = read_bundle(bundle_dir)
    print(f"base model: {info.base_model}")
    for name, entry in info.adapters.items():
        mark = " (default)" if name == info.default else ""
        print(
            f"{name}{mark}: {entry['method']} ({entry['peft_type']}), from {entry['source_run']}"
        )
