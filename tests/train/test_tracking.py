"""training.report_to: TensorBoard, MLflow and W&B (offline) get the same rows as metrics.jsonl, inside the run dir."""

from __future__ import annotations

import json
import os

import pytest

from tests.train.test_run_tiny import recipe_for
from tuneforge.errors import ConfigError
from tuneforge.recipes import train
from tuneforge.train import tracking


def _losses(run_dir) -> list[tuple[int, float]]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss"]) for r in rows if "loss" in r]


@pytest.fixture
def clean_tracker_env(monkeypatch):
    """The trackers read environment variables; keep the user's (and other tests') out of this one."""
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME", "WANDB_MODE", "WANDB_DIR", "WANDB_PROJECT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WANDB_SILENT", "true")
    yield
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME", "WANDB_MODE", "WANDB_DIR", "WANDB_PROJECT"):
        os.environ.pop(name, None)


def test_all_three_trackers_log_what_metrics_jsonl_logs(tmp_path, tiny_model_dir, clean_tracker_env):
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    recipe = recipe_for(tmp_path, tiny_model_dir, "eval.data=null", "data.val_fraction=0", "training.max_steps=3",
                        "training.report_to=[tensorboard,mlflow,wandb]")
    run = train(recipe).run_dir
    expected = _losses(run)
    assert [step for step, _ in expected] == [1, 2, 3]

    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    tb = [(e.step, e.value) for e in events.Scalars("train/loss")]
    assert [s for s, _ in tb] == [1, 2, 3]
    assert [v for _, v in tb] == pytest.approx([v for _, v in expected], rel=1e-6)

    client = MlflowClient(tracking_uri=f"sqlite:///{(run / 'mlflow.db').resolve()}")
    experiment = client.get_experiment_by_name(run.resolve().name)
    (mlflow_run,) = client.search_runs([experiment.experiment_id])
    history = sorted((m.step, m.value) for m in client.get_metric_history(mlflow_run.info.run_id, "loss"))
    assert [s for s, _ in history] == [1, 2, 3]
    assert [v for _, v in history] == pytest.approx([v for _, v in expected], rel=1e-6)

    offline = list((run / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(offline) == 1 and offline[0].stat().st_size > 0


def test_missing_tracker_package_fails_before_any_model_loads(tmp_path, tiny_model_dir, monkeypatch):
    monkeypatch.setitem(tracking.TRACKERS, "tensorboard", ("tuneforge_no_such_tracker", "pip install tensorboard"))
    recipe = recipe_for(tmp_path, tiny_model_dir, "model.name=/does/not/exist", "training.report_to=[tensorboard]")
    with pytest.raises(ConfigError, match="training.report_to lists 'tensorboard'") as info:
        train(recipe)
    assert "pip install tensorboard" in info.value.hint
