"""User metrics named as ``package.module:function`` or ``path/to/file.py:function`` in eval.metrics.

Signature (docs/EVALUATION.md)::

    def my_metric(predictions: list[str], references: list[str]) -> dict[str, float] | float

called once per evaluated model (and once per category) with the generated answers and the reference
answers in the same order. A float result is reported under the function's name.

The loader is :mod:`tuneforge.user_code`'s, shared with user reward functions, so a recipe names either
kind of function alike.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

from tuneforge.errors import TuneforgeError
from tuneforge.user_code import load_user_function

SIGNATURE = "def NAME(predictions: list[str], references: list[str]) -> dict[str, float] | float"


@functools.lru_cache(maxsize=32)
def load_metric(ref: str) -> Callable:
    """The callable ``ref`` names (imported once per process); a ConfigError naming eval.metrics and the module, file or function."""
    return load_user_function(ref, f"eval.metrics: metric '{ref}'", SIGNATURE)


def run_user_metric(ref: str, predictions: list[str], references: list[str]) -> dict[str, float]:
    """Call the user's metric and check what it returned (a number, or a dict of names to numbers)."""
    fn = load_metric(ref)
    name = ref.rpartition(":")[2]
    value = fn(list(predictions), list(references))
    result = {name: value} if isinstance(value, (int, float)) and not isinstance(value, bool) else value
    if not isinstance(result, dict) or not all(
        isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool) for k, v in result.items()
    ):
        raise TuneforgeError(f"eval.metrics: metric '{ref}' returned {type(value).__name__}, not a number or a dict of names to numbers", hint=SIGNATURE.replace("NAME", name))
    out = {k: float(v) for k, v in result.items()}
    bad = [k for k, v in out.items() if not math.isfinite(v)]
    if bad:
        raise TuneforgeError(f"eval.metrics: metric '{ref}' returned a non-finite value for {bad[0]!r}", hint="return finite numbers")
    return out
