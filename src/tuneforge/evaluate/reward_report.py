"""The held-out report of an online-RL run (grpo, rloo, ppo): before/after rewards and the reward curve.

sft runs get ``eval/report.md`` from the evaluation runner (evaluate/report.py); an online-RL run is
scored by its own rewards on held-out prompt rows instead (``eval/results.json``), so this writes the
matching ``eval/report.md``: the base and tuned mean reward, accuracy and per-reward means side by
side, the reward curve (``plots/rewards.png``) and the loss plot, and a few tuned answers with their
rewards, so a user reads what the run did without opening JSON.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

SAMPLES_SHOWN = 5


def _cell(value: Any) -> str:
    return "n/a" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)


def _change(base: Any, tuned: Any) -> str:
    return f"{tuned - base:+.4f}" if isinstance(base, (int, float)) and isinstance(tuned, (int, float)) else ""


def reward_report(objective: str, results: dict, plots: dict[str, Path | None], run_dir: Path) -> str:
    """The report's Markdown; ``plots`` names the pictures that exist (``rewards``, ``loss``), linked relative to eval/."""
    models = results["models"]
    base, tuned = models.get("base"), models.get("tuned")
    first = tuned or base or {}
    lines = [f"# {objective} run: held-out rewards", "", f"Run: `{run_dir}`; held-out prompts: `{results['data']}` ({first.get('prompts', 0)}, greedy)", ""]
    rows = [("mean reward", "reward"), ("accuracy", "accuracy")]
    names = sorted({name for m in (base, tuned) if m for name in m.get("rewards", {})})
    lines += ["| metric | base | tuned | change |", "| --- | --- | --- | --- |"]
    for label, key in rows:
        b, t = (base or {}).get(key), (tuned or {}).get(key)
        lines.append(f"| {label} | {_cell(b)} | {_cell(t)} | {_change(b, t)} |")
    for name in names:
        b, t = (base or {}).get("rewards", {}).get(name), (tuned or {}).get("rewards", {}).get(name)
        lines.append(f"| reward `{name}` | {_cell(b)} | {_cell(t)} | {_change(b, t)} |")
    if base is None:
        lines += ["", "The base model was not scored (`eval.before: false`)."]
    for key, caption in (("rewards", "Mean reward of each step's samples"), ("loss", "Training loss")):
        if plots.get(key) is not None:
            lines += ["", f"## {caption}", "", f"![{caption}](../plots/{Path(plots[key]).name})"]  # type: ignore[arg-type]
    samples = (tuned or {}).get("samples", [])[:SAMPLES_SHOWN]
    if samples:
        lines += ["", f"## Tuned answers (first {len(samples)})", ""]
        for s in samples:
            lines += [f"**{s.get('source', '')}** reward {_cell(s.get('reward'))}", "", "```", str(s.get("prompt", "")), "```", "", "```", str(s.get("completion", "")), "```", ""]
    return "\n".join(lines).rstrip() + "\n"


def write_reward_report(objective: str, results: dict, plots: dict[str, Path | None], run_dir: Path) -> Path:
    """Write ``RUN/eval/report.md`` (see :func:`reward_report`); returns its path."""
    path = Path(run_dir) / "eval" / "report.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(reward_report(objective, results, plots, Path(run_dir)), encoding="utf-8")
    return path
