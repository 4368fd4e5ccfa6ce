"""Running the API: ``tuneforge serve`` in the foreground, or a server thread for tests and benchmarks."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import uvicorn
from fastapi import FastAPI

from tuneforge.errors import TuneforgeError
from tuneforge.serve.limits import ServeLimits
from tuneforge.serve.openai_api import create_app
from tuneforge.serve.served import load_served

LOOPBACK = "127.0.0.1"
FEEDBACK_FILE = "feedback.jsonl"


def default_feedback_log(target: str | None) -> Path:
    """Beside the run or bundle that is served (``TARGET/serve/feedback.jsonl``), so ``tuneforge
    monitor TARGET`` finds it; for a plain model or ``--adapter`` runs, ``./tuneforge-serve/``."""
    if target is not None and Path(target).is_dir() and any((Path(target) / f).is_file() for f in ("recipe.yaml", "bundle.json")):
        return Path(target) / "serve" / FEEDBACK_FILE
    return Path("tuneforge-serve") / FEEDBACK_FILE


def run_server(
    target: str | None,
    *,
    adapters: list[str] | None = None,
    name: str | None = None,
    host: str = LOOPBACK,
    port: int = 8000,
    api_key: str | None = None,
    limits: ServeLimits | None = None,
    feedback_log: str | Path | None = None,
    prompt_log: str | Path | None = None,
    log_level: str = "info",
    shadow: str | None = None,
) -> None:
    """Load the model(s) and serve until interrupted; ``shadow`` names an adapter compared on the same traffic."""
    served = load_served(target, adapters, name=name)
    app = create_app(
        served, limits=limits, api_key=api_key, feedback_log=feedback_log or default_feedback_log(target), prompt_log=prompt_log,
        shadow=shadow,
    )
    uvicorn.run(app, host=host, port=port, log_level=log_level, timeout_graceful_shutdown=5)


def free_port(host: str = LOOPBACK) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def serve_in_thread(app: FastAPI, host: str = LOOPBACK, port: int | None = None, timeout: float = 30.0) -> Iterator[str]:
    """Run ``app`` under a real uvicorn server in a thread; yield its base URL (``http://host:port``)."""
    port = port or free_port(host)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, name="tuneforge-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise TuneforgeError(f"the server did not start on {host}:{port}", hint="is the port free?")
        time.sleep(0.02)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=timeout)
