"""Trainer callbacks: metrics.jsonl, a rich progress display, and checkpoint commit markers.

All of them use the public ``TrainerCallback`` hooks only.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from transformers import (
    EarlyStoppingCallback,
    TrainerCallback,
    TrainerControl,
    TrainerState,
    TrainingArguments,
)

from tuneforge.config.schema import TrainingSection
from tuneforge.errors import TuneforgeError
from tuneforge.runs import CHECKPOINTS_DIR, METRICS_FILE
from tuneforge.train.tracking import tracker_callbacks

COMMIT_MARKER = "tuneforge-commit.json"


class MetricsLogger(TrainerCallback):
    """Appends one JSON object per logging step (train or eval) to metrics.jsonl, with tokens/s added."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._last_time: float | None = None
        self._last_tokens = 0
        self._start = time.perf_counter()

    def on_train_begin(self, args, state: TrainerState, control: TrainerControl, **kwargs):
        self._last_time = time.perf_counter()
        self._last_tokens = state.num_input_tokens_seen
        if state.global_step > 0 and state.is_world_process_zero:
            self._drop_rows_after(state.global_step)

    def _drop_rows_after(self, step: int) -> None:
        """A resumed run redoes the steps after its checkpoint: drop the rows the killed session logged for them.

        Evaluation and logging at step N happen before the checkpoint of step N is written, so rows up
        to the checkpoint's step are the ones the resumed run would not log again.
        """
        if not self.path.is_file():
            return
        kept = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:  # a line cut short by the kill
                continue
            if isinstance(row, dict) and isinstance(row.get("step"), int) and row["step"] <= step:
                kept.append(line)
        tmp = self.path.with_suffix(".jsonl.tmp")
        tmp.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
        os.replace(tmp, self.path)

    def on_log(self, args, state: TrainerState, control: TrainerControl, logs=None, **kwargs):
        if not logs or not state.is_world_process_zero:
            return
        if "nonfinite" in logs:  # a NaN/inf event (train/nonfinite.py): kept whole, rows and names included
            row = {"step": logs.get("nonfinite_step", state.global_step), **logs, "elapsed_s": round(time.perf_counter() - self._start, 2)}
            with self.path.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(row) + "\n")
            return
        row: dict = {"step": state.global_step, "epoch": round(state.epoch or 0.0, 4)}
        row.update({k: v for k, v in logs.items() if isinstance(v, (int, float)) and not isinstance(v, bool)})
        if "loss" in logs and self._last_time is not None:
            now = time.perf_counter()
            tokens = state.num_input_tokens_seen
            dt = now - self._last_time
            if dt > 0 and tokens > self._last_tokens:
                row["tokens_per_s"] = round((tokens - self._last_tokens) / dt, 1)
            self._last_time, self._last_tokens = now, tokens
        if "eval_loss" in row:
            row["eval_perplexity"] = math.exp(min(row["eval_loss"], 50.0))
        row["elapsed_s"] = round(time.perf_counter() - self._start, 2)
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(row) + "\n")


class RichProgress(TrainerCallback):
    """Step bar with loss, tokens/s and ETA; replaces the Trainer's tqdm bar and dict printing."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self.progress: Progress | None = None
        self.task = None
        self._t0 = 0.0
        self._tokens0 = 0

    def on_train_begin(self, args, state: TrainerState, control: TrainerControl, **kwargs):
        if not state.is_world_process_zero:
            return
        self.progress = Progress(
            TextColumn("[bold]train[/]"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"),
            TextColumn("{task.fields[tps]} tok/s"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )
        self.progress.start()
        self.task = self.progress.add_task("train", total=state.max_steps, completed=state.global_step, loss="-", tps="-")
        self._t0 = time.perf_counter()
        self._tokens0 = state.num_input_tokens_seen

    def on_step_end(self, args, state: TrainerState, control: TrainerControl, **kwargs):
        if self.progress is None:
            return
        dt = time.perf_counter() - self._t0
        tps = (state.num_input_tokens_seen - self._tokens0) / dt if dt > 0 else 0.0
        self.progress.update(self.task, completed=state.global_step, tps=f"{tps:,.0f}")

    def on_log(self, args, state: TrainerState, control: TrainerControl, logs=None, **kwargs):
        if self.progress is None or not logs:
            return
        if "nonfinite" in logs:
            self.progress.console.print(
                f"  [yellow]step {logs.get('nonfinite_step')}: non-finite {logs['nonfinite']} ({logs.get('action')})[/]"
            )
            if logs.get("action") == "stop":  # the run ends with an error next, and on_train_end never comes
                self.on_train_end(args, state, control)
            return
        if "loss" in logs:
            self.progress.update(self.task, loss=f"{logs['loss']:.4f}")
        if "eval_loss" in logs:
            self.progress.console.print(f"  step {state.global_step}: validation loss {logs['eval_loss']:.4f}")
        if not self.console.is_terminal and "loss" in logs:
            # Non-interactive logs (CI, files) get a plain line per logging step instead of a redrawn bar.
            self.console.print(f"  step {state.global_step}/{state.max_steps} loss {logs['loss']:.4f}")

    def on_train_end(self, args, state: TrainerState, control: TrainerControl, **kwargs):
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


class CheckpointCommit(TrainerCallback):
    """Marks a checkpoint complete once the Trainer has written all of it.

    The Trainer writes ``checkpoint-N`` file by file; a crash midway leaves a partial folder. The
    marker is written last (to a temp name, then renamed, which is atomic), and ``--resume`` only
    considers checkpoints that carry it.
    """

    def on_save(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        if not state.is_world_process_zero:
            return
        ckpt = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if not ckpt.is_dir():
            return
        tmp = ckpt / (COMMIT_MARKER + ".tmp")
        tmp.write_text(json.dumps({"step": state.global_step, "epoch": state.epoch, "time": time.time()}))
        os.replace(tmp, ckpt / COMMIT_MARKER)


def latest_committed_checkpoint(checkpoints_dir: Path) -> Path | None:
    """The newest checkpoint folder with a commit marker (partial ones are ignored)."""
    if not checkpoints_dir.is_dir():
        return None
    found = []
    for child in checkpoints_dir.iterdir():
        name = child.name
        if child.is_dir() and name.startswith("checkpoint-") and name[11:].isdigit() and (child / COMMIT_MARKER).is_file():
            found.append((int(name[11:]), child))
    return max(found)[1] if found else None


def run_callbacks(
    run_dir: Path, console: Console, training: TrainingSection, extra: Sequence[TrainerCallback] = ()
) -> list[TrainerCallback]:
    """Every run's callbacks: metrics.jsonl, trackers, progress, checkpoint markers, early stopping if set, then ``extra``."""
    callbacks: list[TrainerCallback] = [MetricsLogger(run_dir / METRICS_FILE), *tracker_callbacks(run_dir, training.report_to)]
    callbacks += [RichProgress(console), CheckpointCommit()]
    if training.early_stopping_patience:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=training.early_stopping_patience))
    return callbacks + list(extra)


def checkpoint_being_written(run_dir: Path, step: int) -> Path | None:
    """``checkpoint-<step>`` when it exists without its commit marker: a save of that step was under way.

    The Trainer creates the folder before it writes the first file, and the marker comes last, so a
    failure with such a folder on disk happened while writing it (the error itself may carry no errno:
    torch.save reports a full disk as a C++ iostream RuntimeError).
    """
    folder = run_dir / CHECKPOINTS_DIR / f"checkpoint-{step}"
    return folder if folder.is_dir() and not (folder / COMMIT_MARKER).is_file() else None


def write_failure(exc: BaseException, run_dir: Path, what: str) -> TuneforgeError:
    """The error for a save that failed (a full disk, a quota, a file-size limit), naming the checkpoint still good."""
    kept = latest_committed_checkpoint(run_dir / CHECKPOINTS_DIR)
    cause = getattr(exc, "strerror", None) or (str(exc).splitlines() or [type(exc).__name__])[0]
    free_mb = shutil.disk_usage(run_dir).free / 2**20
    where = f"; the last complete checkpoint {kept} is kept" if kept else "; no complete checkpoint was written yet"
    return TuneforgeError(
        f"writing {what} failed: {cause} ({free_mb:.0f} MB free on the run's disk){where}",
        hint="free disk space (or lower training.save_total_limit), then run the same command with --resume"
        if kept
        else "free disk space, then start the run again",
    )


def checkpoint_to_resume(run_dir: Path) -> Path:
    """The checkpoint ``--resume`` continues from, or an error saying there is none."""
    checkpoint = latest_committed_checkpoint(run_dir / CHECKPOINTS_DIR)
    if checkpoint is None:
        raise TuneforgeError(f"--resume: no complete checkpoint in {run_dir / CHECKPOINTS_DIR}", hint="start the run again without --resume")
    return checkpoint
