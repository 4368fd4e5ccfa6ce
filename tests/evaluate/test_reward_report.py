"""The held-out report of an online-RL run: before/after figures with their change, the plots, tuned samples."""

from __future__ import annotations

from pathlib import Path

from tuneforge.evaluate.reward_report import reward_report, write_reward_report

RESULTS = {
    "data": "test.jsonl",
    "models": {
        "base": {"prompts": 2, "reward": 0.25, "accuracy": 0.0, "rewards": {"correct": 0.0, "format": 0.5}, "samples": []},
        "tuned": {
            "prompts": 2, "reward": 1.5, "accuracy": 0.5, "rewards": {"correct": 0.5, "format": 1.0},
            "samples": [{"source": "test.jsonl:1", "prompt": "2+2?", "completion": "#### 4", "reward": 2.5}],
        },
    },
}  # fmt: skip


def test_report_gives_base_tuned_and_change_for_every_reward(tmp_path: Path) -> None:
    text = reward_report("grpo", RESULTS, {"rewards": tmp_path / "plots" / "rewards.png", "loss": None}, tmp_path)
    assert "| mean reward | 0.2500 | 1.5000 | +1.2500 |" in text
    assert "| accuracy | 0.0000 | 0.5000 | +0.5000 |" in text
    assert "| reward `correct` | 0.0000 | 0.5000 | +0.5000 |" in text and "| reward `format` | 0.5000 | 1.0000 | +0.5000 |" in text
    assert "![Mean reward of each step's samples](../plots/rewards.png)" in text and "Training loss" not in text
    assert "**test.jsonl:1** reward 2.5000" in text and "#### 4" in text


def test_without_a_base_evaluation_the_report_says_so(tmp_path: Path) -> None:
    tuned_only = {"data": "t.jsonl", "models": {"tuned": RESULTS["models"]["tuned"]}}
    path = write_reward_report("ppo", tuned_only, {}, tmp_path)
    text = path.read_text()
    assert path == tmp_path / "eval" / "report.md" and text.startswith("# ppo run: held-out rewards")
    assert "| mean reward | n/a | 1.5000 |  |" in text and "was not scored (`eval.before: false`)" in text
