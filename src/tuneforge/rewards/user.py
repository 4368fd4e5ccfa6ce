"""User reward functions named in a recipe as ``package.module:function`` or ``path/to/file.py:function``.

The function is called as TRL calls its reward functions, so one written for TRL ports as is:
``f(prompts: list[str], completions: list[str], **columns) -> list[float | None]`` (docs/REWARDS.md).
"""

from __future__ import annotations

from collections.abc import Callable

from tuneforge.user_code import load_user_function

SIGNATURE = "def NAME(prompts, completions, **columns) -> list[float | None]"


def load_function(ref: str, key: str = "objective.rewards") -> Callable:
    """The callable ``ref`` names; a ConfigError naming the module, file or function when it is not there."""
    return load_user_function(ref, f"{key}: reward function '{ref}'", SIGNATURE)
