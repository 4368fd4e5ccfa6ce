"""``tuneforge serve``: the OpenAI-compatible HTTP server. Thin: parses options and calls serve.server."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from tuneforge.cli.errors import err, user_errors


@user_errors
def serve(
    target: Annotated[str | None, typer.Argument(help="A run directory, an adapter bundle or a model (built-in name, local dir, .gguf file).")] = None,
    adapter: Annotated[list[str] | None, typer.Option("--adapter", help="NAME=RUN: serve this adapter run under NAME (repeat for several on one base).")] = None,
    name: Annotated[str | None, typer.Option(help="The model name clients use for a single run or model (default: the run directory's name or the model spec).")] = None,
    host: Annotated[str, typer.Option(help="Interface to bind; the default answers this machine only. 0.0.0.0 exposes the server to the network.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    api_key: Annotated[str | None, typer.Option("--api-key", help="Require 'Authorization: Bearer KEY' (default: env TUNEFORGE_API_KEY; none = open).")] = None,
    feedback_log: Annotated[Path | None, typer.Option(help="JSONL file POST /v1/feedback appends to (default: TARGET/serve/feedback.jsonl for a run or bundle, else tuneforge-serve/feedback.jsonl).")] = None,
    prompt_log: Annotated[Path | None, typer.Option(help="Also log every prompt to this JSONL file (for `tuneforge monitor` input drift). Off by default: it stores what users type.")] = None,
    max_batch: Annotated[int, typer.Option(help="Requests generated together in one batch.")] = 16,
    batch_wait_ms: Annotated[float, typer.Option(help="How long to collect requests before a batch starts.")] = 5.0,
    queue_size: Annotated[int, typer.Option(help="Requests that may wait; beyond this the server answers 429.")] = 64,
    max_prompt_tokens: Annotated[int, typer.Option(help="Longest prompt accepted (tokens).")] = 4096,
    max_tokens: Annotated[int, typer.Option(help="Largest max_tokens a request may ask for.")] = 2048,
    max_body_bytes: Annotated[int, typer.Option(help="Largest request body accepted.")] = 1_000_000,
    shadow: Annotated[str | None, typer.Option(help="ADAPTER: also answer every request with this served adapter, off the response path; both outputs go to shadow.jsonl beside the feedback log, agreement to /metrics.")] = None,
) -> None:
    """Serve a run, a bundle or a model over an OpenAI-compatible API (/v1/chat/completions, /v1/completions, /v1/models, /v1/feedback, /metrics)."""
    # lazy: serve.server imports torch, transformers and peft (about 10 s of `tuneforge --help`, cli/main.py)
    from tuneforge.serve.limits import ServeLimits
    from tuneforge.serve.server import run_server

    limits = ServeLimits(
        max_body_bytes=max_body_bytes, max_prompt_tokens=max_prompt_tokens, max_tokens=max_tokens,
        queue_size=queue_size, max_batch=max_batch, batch_wait_ms=batch_wait_ms,
    )
    key = api_key or os.environ.get("TUNEFORGE_API_KEY") or None
    if host not in ("127.0.0.1", "localhost", "::1") and key is None:
        err.print(f"[bold yellow]warning:[/] serving on {host} without an API key: anyone who can reach this port can use the model")
    run_server(
        target, adapters=adapter, name=name, host=host, port=port, api_key=key, limits=limits,
        feedback_log=feedback_log, prompt_log=prompt_log, shadow=shadow,
    )


def register(app: typer.Typer) -> None:
    """Attach the command to the main app."""
    app.command(
        name="serve",
        epilog=(
            "Examples:\n\n"
            "- `tuneforge serve runs/quickstart` (then point an OpenAI client at http://127.0.0.1:8000/v1)\n\n"
            "- `tuneforge serve bundles/support --api-key $KEY --port 9000`\n\n"
            "- `tuneforge serve --adapter support=runs/support --adapter legal=runs/legal`"
        ),
    )(serve)
