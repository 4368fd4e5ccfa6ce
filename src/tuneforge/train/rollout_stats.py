"""Rollout and update statistics averaged into each training log row, shared by the online-RL trainers."""

from __future__ import annotations

from transformers import Trainer


class RolloutStatsLog(Trainer):
    """Each ``loss`` row carries the mean of every statistic the trainer appended to ``self._stats`` since the last row."""

    _stats: dict[str, list[float]]

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        logs = dict(logs)
        if "loss" in logs:  # a training row: the rollout and update statistics of the steps since the last one
            logs.update({k: sum(v) / len(v) for k, v in self._stats.items() if v})
            self._stats.clear()
        super().log(logs, start_time)
