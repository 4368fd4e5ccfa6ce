"""``tuneforge ui``: the local web app (Gradio) over the same library calls as these commands."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tuneforge.cli.errors import err, user_errors


@user_errors
def ui(
    host: Annotated[str, typer.Option(help="Interface to bind; the default answers this machine only. 0.0.0.0 exposes the UI (and the runs it can start) to the network.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 7860,
    runs: Annotated[Path, typer.Option(help="Folder whose run directories the Train tab lists.")] = Path("runs"),
    workdir: Annotated[Path, typer.Option(help="Where uploads, the form's recipes and the process logs go.")] = Path(".tuneforge-ui"),
) -> None:
    """Open the web UI: data, recipe form, training with live plots, evaluation, side-by-side chat, export and serve."""
    # lazy: gradio and the training stack cost about 10 s of `tuneforge --help` (cli/main.py docstring)
    from tuneforge.ui.app import launch

    if host not in ("127.0.0.1", "localhost", "::1"):
        err.print(f"[bold yellow]warning:[/] the UI on {host} lets anyone who can reach this port train and run models")
    err.print(f"tuneforge ui on http://{host}:{port} (Ctrl-C stops it and the runs it started)")
    launch(host=host, port=port, workdir=workdir, runs_root=runs)


def register(app: typer.Typer) -> None:
    """Attach the command to the main app."""
    app.command(
        name="ui",
        epilog=(
            "Examples:\n\n"
            "- `tuneforge ui` (then open http://127.0.0.1:7860)\n\n"
            "- `tuneforge ui --port 7861 --runs experiments/`"
        ),
    )(ui)
