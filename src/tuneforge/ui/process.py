"""Training runs and servers started from the UI, each a separate ``tuneforge`` process.

A run is ``tuneforge train RECIPE`` in its own process: the web server stays responsive while it
trains, a crash in training cannot take the UI down, and the run is exactly the one the command
shown in the UI would start from a terminal. Stopping sends SIGINT (what Ctrl-C sends): the run ends
with its last committed checkpoint intact, and ``tuneforge train RUN/recipe.yaml --resume`` continues
from there. Each process's output goes to a log file in the UI's work directory (never into the run
directory, whose contents ``tuneforge train`` owns).

Past runs are the run directories under the runs root, with a status read from the directory
itself (runs.py contract), so runs started from a terminal are listed too.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from tuneforge.runs import ADAPTER_DIR, CHECKPOINTS_DIR, MODEL_DIR, RECIPE_FILE, SUMMARY_FILE
from tuneforge.train.callbacks import latest_committed_checkpoint


def tuneforge_command() -> list[str]:
    """``tuneforge`` under this interpreter (not whichever ``tuneforge`` is first on PATH)."""
    return [sys.executable, "-m", "tuneforge.cli.main"]


def shown_command(args: list[str]) -> str:
    """The command as a user would type it (``tuneforge ...``)."""
    return shlex.join(["tuneforge", *args])


@dataclass
class Job:
    """A ``tuneforge`` process the UI started: its arguments, log file and process handle."""

    name: str
    args: list[str]
    log: Path
    process: subprocess.Popen
    started: float = field(default_factory=time.time)
    stopped: bool = False

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    @property
    def command(self) -> str:
        return shown_command(self.args)

    def log_text(self, limit: int = 20_000) -> str:
        """The tail of the process's output."""
        try:
            text = self.log.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return text[-limit:]


class Jobs:
    """The processes started from this UI, by name (a run directory's path, or ``serve``)."""

    def __init__(self, workdir: str | Path, program: list[str] | None = None) -> None:
        self.workdir = Path(workdir)
        self.program = program or tuneforge_command()  # tests put a stand-in process here
        self.jobs: dict[str, Job] = {}

    def start(self, name: str, args: list[str], env: dict[str, str] | None = None) -> Job:
        """Start ``tuneforge ARGS`` with output to ``WORKDIR/logs/<name>.log``; refuses a name still running."""
        current = self.jobs.get(name)
        if current is not None and current.running:
            raise RuntimeError(f"{name} is already running (pid {current.process.pid})")
        logs = self.workdir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        log = logs / (name.strip("/").replace("/", "_").replace(os.sep, "_") + ".log")
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        with log.open("w", encoding="utf-8") as fh:
            fh.write(f"$ {shown_command(args)}\n")
            fh.flush()
            process = subprocess.Popen(
                [*self.program, *args],
                stdout=fh,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=full_env,
                start_new_session=True,  # a Ctrl-C in the UI's terminal does not also stop the run
            )
        job = Job(name, args, log, process)
        self.jobs[name] = job
        return job

    def stop(self, name: str, timeout: float = 60.0) -> Job | None:
        """SIGINT, as Ctrl-C would; SIGKILL if it has not ended after ``timeout`` seconds."""
        job = self.jobs.get(name)
        if job is None or not job.running:
            return job
        job.stopped = True
        job.process.send_signal(signal.SIGINT)
        try:
            job.process.wait(timeout)
        except subprocess.TimeoutExpired:
            job.process.kill()
            job.process.wait()
        return job

    def stop_all(self) -> None:
        for name in list(self.jobs):
            self.stop(name, timeout=10.0)


def run_status(run_dir: Path, job: Job | None = None) -> str:
    """running, finished, failed, stopped (resumable from step N) or incomplete, from the directory."""
    if job is not None and job.running:
        return "running"
    summary = run_dir / SUMMARY_FILE
    if summary.is_file():
        try:
            data = json.loads(summary.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            data = {}
        if isinstance(data, dict) and data.get("error"):
            return "failed"
    if (run_dir / ADAPTER_DIR).is_dir() or (run_dir / MODEL_DIR).is_dir():
        return "finished"
    checkpoint = latest_committed_checkpoint(run_dir / CHECKPOINTS_DIR)
    if checkpoint is not None:
        return f"stopped (resumable from step {checkpoint.name.removeprefix('checkpoint-')})"
    if job is not None and job.process.returncode not in (None, 0) and not job.stopped:
        return f"failed (exit {job.process.returncode})"
    return "stopped (no checkpoint yet: start again)" if job is not None and job.stopped else "incomplete"


def list_runs(root: str | Path, jobs: Jobs | None = None) -> list[dict]:
    """Every run directory under ``root`` (one level), newest first, with its status."""
    root = Path(root)
    found = []
    if root.is_dir():
        for child in root.iterdir():
            if child.is_dir() and (child / RECIPE_FILE).is_file():
                job = jobs.jobs.get(str(child)) if jobs else None
                found.append({"run": str(child), "status": run_status(child, job), "modified": child.stat().st_mtime})
    if jobs:  # a run just started may not have written its recipe.yaml yet
        listed = {r["run"] for r in found}
        for name, job in jobs.jobs.items():
            if name != "serve" and name not in listed and Path(name).parent == root:
                found.append({"run": name, "status": run_status(Path(name), job), "modified": job.started})
    return sorted(found, key=lambda r: -r["modified"])
