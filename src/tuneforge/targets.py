"""What ``eval``, ``chat``, ``export`` and ``score`` can be pointed at: a run directory, an adapter bundle or a model spec.

Above :mod:`tuneforge.runs` (the directory contract) and :mod:`tuneforge.adapters` (bundles): loading a
run needs the method layer to put its adapter back on the base.
"""

from __future__ import annotations

from pathlib import Path

import torch

from tuneforge.adapters.bundle import is_bundle_dir, load_bundle
from tuneforge.config.load import load_recipe
from tuneforge.errors import TuneforgeError
from tuneforge.methods import load_base_model, load_method
from tuneforge.models.load import load_model, load_tokenizer
from tuneforge.objectives.reward import load_reward_model
from tuneforge.runs import ADAPTER_DIR, MODEL_DIR, RECIPE_FILE, LoadedRun


def load_run(path: str | Path, *, dtype=None) -> LoadedRun:
    """Load a finished run: base + adapter (unmerged) or the full fine-tuned model, with its tokenizer."""
    p = Path(path)
    if not (p / RECIPE_FILE).is_file():
        raise TuneforgeError(f"{p} is not a tuneforge run directory (no {RECIPE_FILE})", hint="pass the output.dir of a finished `tuneforge train`")
    recipe = load_recipe(p / RECIPE_FILE)
    dtype = dtype or torch.float32
    # a reward run holds a scalar-head reward model, not a causal LM
    load = load_reward_model if recipe.objective.type == "reward" else load_model
    if (p / ADAPTER_DIR).is_dir():
        tokenizer = load_tokenizer(str(p / ADAPTER_DIR)) if (p / ADAPTER_DIR / "tokenizer_config.json").is_file() else load_tokenizer(recipe.model.name)
        if recipe.objective.type == "reward":
            base = load(recipe.model.name, dtype=dtype)
        else:  # as trained: qlora's 4-bit base is never loaded in full precision
            base = load_base_model(recipe.model.name, recipe.method, dtype=dtype)
        model = load_method(base, p / ADAPTER_DIR, recipe.method)  # a peft or bottleneck adapter
    elif (p / MODEL_DIR).is_dir():
        tokenizer = load_tokenizer(str(p / MODEL_DIR))
        model = load(str(p / MODEL_DIR), dtype=dtype)
    else:
        raise TuneforgeError(
            f"{p} has no {ADAPTER_DIR}/ or {MODEL_DIR}/: training did not finish",
            hint=f"resume it with: tuneforge train {p / RECIPE_FILE} --resume",
        )
    model.eval()
    return LoadedRun(p, recipe, model, tokenizer)


def load_target(
    target: str,
    *,
    dtype=None,
    adapter: str | None = None,
    weights: dict[str, float] | None = None,
    combination: str = "cat",
) -> LoadedRun | tuple[object, object]:
    """A run directory loads as a run, an adapter bundle as a run with the chosen adapter (or weighted
    mix) active; anything else as a model spec (built-in name, dir, .gguf, hub id)."""
    if is_bundle_dir(target):
        return load_bundle(target, adapter=adapter, weights=weights, combination=combination, dtype=dtype)
    if adapter is not None or weights:
        raise TuneforgeError(
            f"--adapter/--weights choose among the adapters of a bundle, and {target} is not one",
            hint="bundle runs first: tuneforge adapters bundle NAME=RUN ... -o DIR, then pass DIR",
        )
    if (Path(target) / RECIPE_FILE).is_file():
        loaded = load_run(target, dtype=dtype)
        if loaded.recipe.objective.type == "reward":  # a scalar head: nothing to generate with
            raise TuneforgeError(
                f"{target} is a reward model (objective.type: reward); it scores responses and cannot generate",
                hint=f"score (prompt, response) pairs with: tuneforge score {target} --data FILE",
            )
        return loaded
    model = load_model(target, dtype=dtype or torch.float32)
    model.eval()
    return model, load_tokenizer(target)
