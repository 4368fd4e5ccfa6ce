"""User reward functions named in a recipe as ``package.module:function`` or ``path/to/file.py:function``.

The function is called as TRL calls its reward functions, so one written for TRL ports as is:
``f(prompts: list[str], completions: list[str], **columns) -> list[float | None]`` (docs/REWARDS.md).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path

from tuneforge.errors import ConfigError


def load_function(ref: str, key: str = "objective.rewards") -> Callable:
    """The callable ``ref`` names; a ConfigError naming the module, file or function when it is not there."""
    target, _, name = ref.rpartition(":")
    if target.endswith(".py") or "/" in target or "\\" in target:
        module = _from_file(Path(target), ref, key)
    else:
        try:
            module = importlib.import_module(target)
        except ImportError as exc:
            raise ConfigError(
                f"{key}: reward function '{ref}': cannot import module '{target}': {exc}",
                hint="install the package, add its folder to PYTHONPATH, or give a file path: path/to/file.py:function",
            ) from None
    fn = getattr(module, name, None)
    if not callable(fn):
        raise ConfigError(
            f"{key}: reward function '{ref}': '{target}' has no function '{name}'",
            hint="define def " + name + "(prompts, completions, **columns) -> list[float | None] there, or fix the name",
        )
    return fn


def _from_file(path: Path, ref: str, key: str):
    if not path.is_file():
        raise ConfigError(f"{key}: reward function '{ref}': file {path} does not exist", hint="paths are relative to the working directory")
    name = f"tuneforge_user_reward_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"{key}: reward function '{ref}': {path} is not a Python file", hint="give a .py file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # so pickling and dataclasses inside the user's file work
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(name, None)
        raise ConfigError(f"{key}: reward function '{ref}': importing {path} failed: {type(exc).__name__}: {exc}", hint="fix the file") from None
    return module
