"""Loading a user's Python function named in a recipe as ``package.module:function`` or ``path/to/file.py:function``.

One loader for every place a recipe names user code (reward functions, evaluation metrics), so both
resolve names alike and fail with the same kind of message. It sits just above ``errors`` so any layer
may use it.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

from tuneforge.errors import ConfigError


def load_user_function(ref: str, what: str, signature: str) -> Callable:
    """The callable ``ref`` names; a ConfigError starting with ``what`` (e.g. "eval.metrics: metric 'x.py:f'")
    naming the module, file or function when it is not there, with ``signature`` as the hint."""
    target, _, name = ref.rpartition(":")
    if target.endswith(".py") or "/" in target or "\\" in target:
        module = _from_file(Path(target), what)
    else:
        try:
            module = importlib.import_module(target)
        except ImportError as exc:
            raise ConfigError(
                f"{what}: cannot import module '{target}': {exc}",
                hint="install the package, add its folder to PYTHONPATH, or give a file path: path/to/file.py:function",
            ) from None
    fn = getattr(module, name, None)
    if not callable(fn):
        raise ConfigError(f"{what}: '{target}' has no function '{name}'", hint=f"define {signature.replace('NAME', name)} there, or fix the name")
    return fn


def _from_file(path: Path, what: str) -> ModuleType:
    if not path.is_file():
        raise ConfigError(f"{what}: file {path} does not exist", hint="paths are relative to the working directory")
    name = f"tuneforge_user_code_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"{what}: {path} is not a Python file", hint="give a .py file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # so pickling and dataclasses inside the user's file work
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(name, None)
        raise ConfigError(f"{what}: importing {path} failed: {type(exc).__name__}: {exc}", hint="fix the file") from None
    return module
