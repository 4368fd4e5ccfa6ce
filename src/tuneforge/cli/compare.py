"""``tuneforge compare``: several runs side by side. Thin: parses and calls evaluate.compare."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tuneforge.cli.errors import err, user_errors


@user_errors
def compare(
    runs: Annotated[list[Path], typer.Argument(help="Two or more run directories (each with eval/results.json), eval directories or results.json files.")],
    data: Annotated[Path | None, typer.Option("--data", help="Evaluate every run on this file first (into the comparison's directory), then compare.")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Output directory (default: compare-<a>-vs-<b>).")] = None,
    limit: Annotated[int | None, typer.Option(help="With --data: evaluate only the first N examples.")] = None,
) -> None:
    """Put runs side by side: headline metric, every shared metric, business figures, safety, forgetting, samples."""
    # lazy: evaluate.compare imports matplotlib: 3-4 s on a busy 2-core EPYC (measured `import`), `tuneforge --help` needs none of it
    from tuneforge.evaluate.compare import compare_runs

    md_path, html_path = compare_runs(runs, out=out, data=data, limit=limit)
    err.print(f"comparison: {html_path} (and {md_path.name})", highlight=False)


def register(app: typer.Typer) -> None:
    """Attach the command to the main app."""
    app.command(
        name="compare",
        epilog=(
            "Examples:\n\n"
            "- `tuneforge compare runs/lora-r8 runs/lora-r16`\n\n"
            "- `tuneforge compare runs/sft runs/dpo --data data/test.jsonl --out compare-sft-dpo`"
        ),
    )(compare)
