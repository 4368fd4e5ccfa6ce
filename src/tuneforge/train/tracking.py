"""Experiment tracking (``training.report_to``): TensorBoard, MLflow and W&B, offline and inside the run dir.

transformers ships a callback for each tracker; we use those public callbacks rather than writing
loggers of our own, and only choose where they write. Every tracker receives exactly the rows that
go to ``metrics.jsonl`` (the same ``on_log`` events), so the curves agree. Defaults keep everything
local, as a laptop or an air-gapped cluster needs:

- tensorboard: event files in ``RUN/tensorboard`` (``tensorboard --logdir RUN/tensorboard``);
- mlflow: a SQLite store ``RUN/mlflow.db`` unless ``MLFLOW_TRACKING_URI`` is set (``mlflow ui
  --backend-store-uri sqlite:///RUN/mlflow.db``; MLflow 3 refuses its old file store by default),
  experiment named after the run directory;
- wandb: an offline run in ``RUN/wandb`` unless ``WANDB_MODE`` is set (``wandb sync RUN/wandb/offline-run-*``).

MLflow and W&B read their settings from environment variables only (their documented interface);
we set those with ``setdefault``, so a value the user exported wins.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence
from pathlib import Path

from transformers import TrainerCallback

from tuneforge.errors import ConfigError

# tracker -> (import name, install hint)
TRACKERS: dict[str, tuple[str, str]] = {
    "tensorboard": ("tensorboard", "pip install tensorboard  (or tuneforge[tracking])"),
    "mlflow": ("mlflow", "pip install mlflow  (or tuneforge[tracking])"),
    "wandb": ("wandb", "pip install wandb  (or tuneforge[tracking])"),
}
TENSORBOARD_DIR = "tensorboard"
MLFLOW_DB = "mlflow.db"
WANDB_DIR = "wandb"


def check_trackers(names: Sequence[str]) -> None:
    """Fail before any model loads when a tracker in ``training.report_to`` is not installed."""
    for name in names:
        module, hint = TRACKERS[name]
        if importlib.util.find_spec(module) is None:
            raise ConfigError(f"training.report_to lists '{name}' but the {module} package is not installed", hint=hint)


def tracker_callbacks(run_dir: Path, names: Sequence[str]) -> list[TrainerCallback]:
    """transformers' own callbacks for the trackers in ``names``, writing under ``run_dir``."""
    check_trackers(names)
    # lazy: the integrations import each tracker's package, installed only when asked for
    from transformers.integrations import MLflowCallback, TensorBoardCallback, WandbCallback

    callbacks: list[TrainerCallback] = []
    for name in names:
        if name == "tensorboard":
            # lazy: torch's SummaryWriter needs the optional tensorboard package
            from torch.utils.tensorboard import SummaryWriter

            callbacks.append(TensorBoardCallback(tb_writer=SummaryWriter(log_dir=str(run_dir / TENSORBOARD_DIR))))
        elif name == "mlflow":
            os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{(run_dir / MLFLOW_DB).resolve()}")
            os.environ.setdefault("MLFLOW_EXPERIMENT_NAME", run_dir.resolve().name)
            callbacks.append(MLflowCallback())
        elif name == "wandb":
            os.environ.setdefault("WANDB_MODE", "offline")
            os.environ.setdefault("WANDB_DIR", str(run_dir.resolve()))
            os.environ.setdefault("WANDB_PROJECT", "tuneforge")
            (run_dir / WANDB_DIR).mkdir(parents=True, exist_ok=True)
            callbacks.append(WandbCallback())
    return callbacks
