"""The weighted sum of a recipe's reward functions, as the :class:`CompletionScorer` trainers receive.

Every reward (built-in or the user's) is called with the same arguments, TRL's convention, and its
answer is checked the same way: a list with one ``float`` or ``None`` per completion. A function
that raises, or returns the wrong length or type, stops the run with an error naming the function,
because a silently wrong reward trains the model towards the wrong thing with no visible failure.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from rich.console import Console

from tuneforge.data.records import PromptRecord
from tuneforge.errors import ConfigError, TuneforgeError
from tuneforge.objectives.reward_scores import RewardScores


@dataclass
class Reward:
    """One built reward: its log name, weight, what it is (for messages) and its function.

    ``records=True``: ``fn(records, completions)`` (model rewards need the messages); otherwise
    ``fn(prompts, completions, **columns)`` with rendered prompt texts.
    """

    name: str
    weight: float
    label: str  # 'answer_match' or 'function my.module:fn', as messages name it
    fn: Callable[..., Any]
    records: bool = False
    kwargs: dict[str, Any] | None = None


def prompt_text(record: PromptRecord, tokenizer=None) -> str:
    """The prompt as the model sees it: the chat template with the generation prompt when a tokenizer
    is given; without one, a single user turn's text, or ``role: content`` lines for longer prompts."""
    if tokenizer is not None:
        return tokenizer.apply_chat_template(record.as_dicts(), tokenize=False, add_generation_prompt=True)
    if len(record.messages) == 1:
        return record.messages[0].content
    return "\n\n".join(f"{m.role}: {m.content}" for m in record.messages)


def batch_columns(records: Sequence[PromptRecord]) -> dict[str, list[Any]]:
    """Each extra column as a list aligned with the records (None where a row lacks it)."""
    names: dict[str, None] = {}
    for record in records:
        names.update(dict.fromkeys(record.columns))
    return {name: [r.columns.get(name) for r in records] for name in names}


def _checked(reward: Reward, values: Any, n: int) -> list[float | None]:
    where = f"reward '{reward.name}' ({reward.label})"
    hint = "a reward function returns a list with one float (or None: does not apply) per completion; see docs/REWARDS.md"
    if hasattr(values, "tolist") and not isinstance(values, list | tuple):
        values = values.tolist()  # numpy / torch arrays
    if not isinstance(values, list | tuple):
        raise TuneforgeError(f"{where} returned {type(values).__name__}, not a list", hint=hint)
    if len(values) != n:
        raise TuneforgeError(f"{where} returned {len(values)} values for {n} completions", hint=hint)
    out: list[float | None] = []
    for i, value in enumerate(values):
        if value is None:
            out.append(None)
            continue
        if not isinstance(value, int | float):
            raise TuneforgeError(f"{where} returned {type(value).__name__} {value!r} at index {i}, not a number or None", hint=hint)
        if not math.isfinite(value):
            raise TuneforgeError(f"{where} returned {value} at index {i}", hint="return a finite number, or None when the reward does not apply")
        out.append(float(value))
    return out


class RewardScorer:
    """Scores completions with every reward; ``total`` is the weighted sum with None counted as 0."""

    def __init__(self, rewards: Sequence[Reward], *, tokenizer=None, console: Console | None = None) -> None:
        if not rewards:
            raise ConfigError("objective.rewards is empty", hint="add at least one reward, e.g. [{type: answer_match, weight: 2.0}]")
        self.rewards = list(rewards)
        self.tokenizer = tokenizer
        self.console = console
        self._warned: set[str] = set()

    @property
    def names(self) -> list[str]:
        return [r.name for r in self.rewards]

    @property
    def weights(self) -> dict[str, float]:
        return {r.name: r.weight for r in self.rewards}

    def __call__(self, prompts: Sequence[PromptRecord], completions: Sequence[str]) -> RewardScores:
        if len(prompts) != len(completions):
            raise ValueError(f"{len(prompts)} prompts for {len(completions)} completions: repeat each prompt once per sample")
        n = len(completions)
        texts = [prompt_text(p, self.tokenizer) for p in prompts]
        columns = batch_columns(prompts)
        per_reward: dict[str, list[float | None]] = {}
        for reward in self.rewards:
            per_reward[reward.name] = values = self._call(reward, prompts, texts, list(completions), columns, n)
            if n and all(v is None for v in values) and reward.name not in self._warned and self.console is not None:
                self._warned.add(reward.name)
                self.console.print(f"[yellow]reward '{reward.name}' does not apply to any completion of this batch (all None); is its column in the data?[/]")
        total = [sum(r.weight * (per_reward[r.name][i] or 0.0) for r in self.rewards) for i in range(n)]
        return RewardScores(total=total, per_reward=per_reward)

    def _call(self, reward: Reward, records, texts, completions, columns, n) -> list[float | None]:
        try:
            if reward.records:
                values = reward.fn(list(records), completions)
            else:
                values = reward.fn(list(texts), completions, **columns, **(reward.kwargs or {}))
        except TuneforgeError:
            raise
        except Exception as exc:
            raise TuneforgeError(
                f"reward '{reward.name}' ({reward.label}) raised {type(exc).__name__}: {exc}",
                hint="it is called as f(prompts, completions, **columns) with one list entry per completion; "
                f"columns here: {', '.join(columns) or '(none)'} (docs/REWARDS.md)",
            ) from exc
        return _checked(reward, values, n)

    def stats(self, scores: RewardScores, group_size: int) -> dict[str, float]:
        """What a trainer logs per step (see :func:`reward_stats`)."""
        return reward_stats(scores, group_size, self.names)


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    if not values:
        return float("nan"), float("nan")
    mean = sum(values) / len(values)
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))


def reward_stats(scores: RewardScores, group_size: int, names: Sequence[str] | None = None) -> dict[str, float]:
    """Per-step reward statistics of a batch laid out group by group (a prompt's samples consecutive).

    ``reward`` / ``reward_std``: mean and (population) std of the total; ``rewards/<name>/mean`` and
    ``/std`` over the completions the reward applies to (None left out; NaN when it applies to none),
    ``rewards/<name>/applied``: the share it applies to; ``frac_reward_zero_std``: the share of groups
    whose totals are all equal, which get no GRPO signal.
    """
    n = len(scores.total)
    if group_size < 1 or n % group_size:
        raise ValueError(f"{n} completions do not split into groups of {group_size}")
    mean, std = _mean_std(scores.total)
    out = {"reward": mean, "reward_std": std}
    for name in names or list(scores.per_reward):
        raw = scores.per_reward[name]
        applied = [v for v in raw if v is not None]
        out[f"rewards/{name}/mean"], out[f"rewards/{name}/std"] = _mean_std(applied)
        out[f"rewards/{name}/applied"] = len(applied) / len(raw) if raw else float("nan")
    groups = [scores.total[i : i + group_size] for i in range(0, n, group_size)]
    out["frac_reward_zero_std"] = sum(max(g) - min(g) <= 1e-12 for g in groups) / len(groups) if groups else float("nan")
    return out
