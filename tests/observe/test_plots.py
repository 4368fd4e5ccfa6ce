"""Loss curves are drawn from metrics.jsonl, and nothing is written when there is no loss."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from matplotlib.image import imread

from tuneforge.errors import DataError
from tuneforge.observe.plots import plot_loss, read_metrics

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def test_read_metrics_returns_one_dict_per_line_and_skips_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "loss": 2.5}\n\n{"step": 2, "loss": 2.1, "lr": 0.001}\n', encoding="utf-8")
    assert read_metrics(path) == [{"step": 1, "loss": 2.5}, {"step": 2, "loss": 2.1, "lr": 0.001}]


def test_read_metrics_tolerates_the_line_being_written_but_not_a_bad_line_inside(tmp_path: Path) -> None:
    live = tmp_path / "live.jsonl"
    live.write_text('{"step": 1, "loss": 2.5}\n{"step": 2, "lo', encoding="utf-8")
    assert read_metrics(live) == [{"step": 1, "loss": 2.5}]

    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"step": 1, "loss": 2.5}\nnot json\n{"step": 2, "loss": 2.1}\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"broken\.jsonl:2"):
        read_metrics(broken)


def test_read_metrics_missing_file_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        read_metrics(tmp_path / "nope.jsonl")


def test_plot_loss_writes_a_png_with_train_and_validation_curves(tmp_path: Path) -> None:
    rows = [{"step": s, "loss": 3.0 / s, "learning_rate": 1e-4} for s in range(1, 21)]
    rows += [{"step": s, "eval_loss": 3.2 / s} for s in (5, 10, 15, 20)]
    rows.append({"train_runtime": 12.0, "train_loss": 0.9})  # a summary row without a step is ignored
    metrics = _write_jsonl(tmp_path / "metrics.jsonl", rows)

    out = plot_loss(metrics, tmp_path / "plots" / "loss.png")

    assert out == tmp_path / "plots" / "loss.png"
    assert out.read_bytes().startswith(PNG_MAGIC)
    image = imread(out)
    assert image.shape[0] > 100 and image.shape[1] > 100
    assert image[..., :3].std() > 0.01, "the image is not blank"


def test_plot_loss_with_only_validation_rows_still_plots(tmp_path: Path) -> None:
    metrics = _write_jsonl(tmp_path / "metrics.jsonl", [{"step": 10, "eval_loss": 1.5}, {"step": 20, "eval_loss": 1.2}])
    assert plot_loss(metrics, tmp_path / "loss.png") is not None


def test_plot_loss_returns_none_and_writes_nothing_without_losses(tmp_path: Path) -> None:
    metrics = _write_jsonl(
        tmp_path / "metrics.jsonl",
        [{"step": 1, "learning_rate": 1e-4, "grad_norm": 0.5}, {"loss": 2.0}, {"step": 3, "loss": None}],
    )
    out_png = tmp_path / "loss.png"

    assert plot_loss(metrics, out_png) is None
    assert not out_png.exists()


def test_reward_curves_with_each_named_reward_and_the_kl_panel(tmp_path: Path) -> None:
    from tuneforge.observe.plots import plot_rewards

    rows = [{"step": i, "loss": 0.1, "reward/mean": 0.1 * i, "reward/correct/mean": 0.05 * i, "reward/format/mean": 0.5} for i in range(1, 5)]
    out = plot_rewards(_write_jsonl(tmp_path / "m.jsonl", rows), tmp_path / "plots" / "rewards.png")
    assert out is not None and out.read_bytes()[:8] == PNG_MAGIC
    narrow = imread(out).shape[1]
    with_kl = plot_rewards(_write_jsonl(tmp_path / "k.jsonl", [{**r, "kl": 0.01 * r["step"]} for r in rows]), tmp_path / "kl.png")
    assert imread(with_kl).shape[1] > narrow  # a second panel for the KL
    assert plot_rewards(_write_jsonl(tmp_path / "sft.jsonl", [{"step": 1, "loss": 2.0}]), tmp_path / "none.png") is None
    assert not (tmp_path / "none.png").exists()
