"""``objective.rewards`` -> a :class:`RewardScorer`: one builder per reward type, a plain table."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from rich.console import Console

from tuneforge.config.rewards import FunctionReward, RewardSpec
from tuneforge.errors import ConfigError
from tuneforge.rewards.builtin import answer_match, format_reward, integer_reward, length_penalty, regex_reward
from tuneforge.rewards.json_schema import json_schema_reward
from tuneforge.rewards.model_rewards import judge_reward, reward_model_reward
from tuneforge.rewards.scorer import Reward, RewardScorer
from tuneforge.rewards.user import load_function

# type -> (builder, takes records): the text rewards get (prompts, completions, **columns)
BUILDERS: dict[str, tuple[Callable, bool]] = {
    "answer_match": (answer_match, False),
    "format": (format_reward, False),
    "integer": (integer_reward, False),
    "regex": (regex_reward, False),
    "json_schema": (json_schema_reward, False),
    "length_penalty": (length_penalty, False),
    "reward_model": (reward_model_reward, True),
    "judge": (judge_reward, True),
}


def _default_name(spec: RewardSpec) -> str:
    if isinstance(spec, FunctionReward):
        return spec.function.rpartition(":")[2]
    return spec.type


def _names(specs: Sequence[RewardSpec]) -> list[str]:
    """Each reward's log name: its ``name``, else its type (or function); repeats numbered _2, _3..."""
    explicit = [s.name for s in specs if s.name]
    dupes = sorted({n for n in explicit if explicit.count(n) > 1})
    if dupes:
        raise ConfigError(f"objective.rewards: the name {dupes[0]!r} is given to more than one reward", hint="give each reward its own name")
    taken, out = set(explicit), []
    for spec in specs:
        name = spec.name or _default_name(spec)
        if not spec.name:
            base, k = name, 1
            while name in taken:
                k += 1
                name = f"{base}_{k}"
            taken.add(name)
        out.append(name)
    return out


def build_reward(spec: RewardSpec, name: str) -> Reward:
    if isinstance(spec, FunctionReward):
        return Reward(name, spec.weight, f"function {spec.function}", load_function(spec.function), kwargs=dict(spec.kwargs))
    builder, records = BUILDERS[spec.type]
    return Reward(name, spec.weight, spec.type, builder(spec), records=records)


def build_scorer(specs: Sequence[RewardSpec], *, console: Console | None = None, tokenizer=None) -> RewardScorer:
    """The scorer a trainer calls; user functions are imported and model rewards loaded here, once.

    ``tokenizer``: when given, the ``prompts`` a reward function receives are rendered with its chat
    template (the exact text the policy continues); without it, the prompt's own text.
    """
    rewards = [build_reward(spec, name) for spec, name in zip(specs, _names(specs))]
    if console is not None:
        console.print("[bold]rewards[/]: " + ", ".join(f"{r.name} x {r.weight:g}" for r in rewards))
    return RewardScorer(rewards, tokenizer=tokenizer, console=console)
