"""Choosing one adapter per call, and mixing LoRA adapters by weight.

The mix is peft's public ``add_weighted_adapter``; this module picks its settings and rejects the
cases where it would silently compute something else than the user asked for.

``combination="cat"`` (our default) is exact: peft concatenates the adapters' A and B matrices, with
each adapter's weight and its own scale (alpha / r) folded into A, so the new adapter's update is

    delta_W = sum_i  w_i * (alpha_i / r_i) * B_i @ A_i

(its rank is the sum of the ranks; the update is what a merged export adds to the base weights).
``linear`` sums the A's and the B's separately (each scaled by sqrt(w_i * scale_i)), which adds cross
terms B_i A_j and is only an approximation; it needs equal ranks. ``svd`` computes the exact sum and
truncates it to the largest rank by SVD. DoRA adapters are refused: their magnitude vectors are not
combined by peft, so the result would not be a weighted mix.
"""

from __future__ import annotations

import math
from typing import Any

from tuneforge.errors import TuneforgeError

WEIGHTED_ADAPTER = "weighted"
COMBINATIONS = ("cat", "svd", "linear")


def parse_weights(text: str) -> dict[str, float]:
    """``"support=0.7,legal=0.3"`` -> ``{"support": 0.7, "legal": 0.3}``."""
    weights: dict[str, float] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name, sep, value = part.partition("=")
        name = name.strip()
        try:
            weight = float(value)
        except ValueError:
            weight = math.nan
        if not sep or not name or not math.isfinite(weight):
            raise TuneforgeError(
                f"--weights: {part!r} is not NAME=NUMBER",
                hint="write e.g. --weights support=0.7,legal=0.3",
            )
        if name in weights:
            raise TuneforgeError(
                f"--weights: adapter {name!r} is given twice",
                hint="give each adapter one weight",
            )
        weights[name] = weight
    if not weights:
        raise TuneforgeError(
            "--weights is empty", hint="write e.g. --weights support=0.7,legal=0.3"
        )
    return weights


def select_adapter(model: Any, name: str) -> None:
    """Make ``name`` the adapter every following forward / generate call uses (frozen, for inference)."""
    names = list(getattr(model, "peft_config", {}) or {})
    if name not in names:
        raise TuneforgeError(
            f"no adapter {name!r} is loaded",
            hint=f"choose one of: {', '.join(names) or '(none)'}",
        )
    model.set_adapter(name, inference_mode=True)


def add_weighted(
    model: Any,
    weights: dict[str, float],
    *,
    combination: str = "cat",
    name: str = WEIGHTED_ADAPTER,
) -> str:
    """Add the weighted combination of the named LoRA adapters as adapter ``name`` and activate it.

    An adapter of that name from an earlier call is replaced, so calling again with new weights gives
    the new mix (peft itself would keep the old one and return silently).
    """
    if combination not in COMBINATIONS:
        raise TuneforgeError(
            f"combination {combination!r} is not one of {', '.join(COMBINATIONS)}",
            hint="use cat (exact) unless you need a smaller rank (svd)",
        )
    configs = dict(getattr(model, "peft_config", {}) or {})
    unknown = [n for n in weights if n not in configs]
    if unknown:
        raise TuneforgeError(
            f"--weights names adapters that are not loaded: {unknown}",
            hint=f"choose from: {', '.join(n for n in configs if n != name)}",
        )
    for adapter in weights:
        config = configs[adapter]
        peft_type = getattr(config.peft_type, "value", str(config.peft_type))
        if peft_type != "LORA":
            raise TuneforgeError(
                f"adapter {adapter!r} is {peft_type}; weighted mixing is defined for LoRA adapters only",
                hint="select one adapter with --adapter instead, or train the tasks as LoRA runs",
            )
        if getattr(config, "use_dora", False):
            raise TuneforgeError(
                f"adapter {adapter!r} is DoRA; peft does not combine DoRA magnitude vectors, so a weighted mix would be wrong",
                hint="select one adapter with --adapter, or train plain LoRA / rsLoRA runs to mix them",
            )
    if name in configs:
        model.set_adapter(next(iter(weights)), inference_mode=True)
        model.delete_adapter(name)
    try:
        model.add_weighted_adapter(
            list(weights),
            [float(w) for w in weights.values()],
            name,
            combination_type=combination,
        )
    except ValueError as exc:  # peft: different ranks for linear, mixed target_modules kinds, modules_to_save clashes
        raise TuneforgeError(
            f"peft cannot combine {list(weights)} with combination {combination!r}: {exc}",
            hint="use combination 'cat', which allows different ranks",
        ) from None
    model.set_adapter(name, inference_mode=True)
    return name
