"""The run directory: the contract between ``train`` and every later command.

```
runs/<name>/
  recipe.yaml            fully resolved recipe (re-runnable as is)
  adapter/               final peft adapter (adapter methods), or
  model/                 final full weights (full / freeze), safetensors + tokenizer
  checkpoints/checkpoint-N/   resumable; complete ones carry tuneforge-commit.json
  metrics.jsonl          one JSON object per logging / validation step
  data_report.json       counts of examples, tokens, truncated and dropped rows
  skipped_rows.jsonl     bad or dropped rows with the reason (only if any)
  summary.json           precision, throughput, peak memory, timings
  plots/loss.png
  eval/                  <model>.json, predictions-<model>.jsonl, results.json, report.md, report.html
```
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tuneforge.config.load import load_recipe
from tuneforge.config.schema import Recipe
from tuneforge.errors import TuneforgeError

RECIPE_FILE = "recipe.yaml"
ADAPTER_DIR = "adapter"
MODEL_DIR = "model"
CHECKPOINTS_DIR = "checkpoints"
METRICS_FILE = "metrics.jsonl"


def is_run_dir(path: str | Path) -> bool:
    p = Path(path)
    return (p / RECIPE_FILE).is_file() and ((p / ADAPTER_DIR).is_dir() or (p / MODEL_DIR).is_dir())


@dataclass
class LoadedRun:
    path: Path
    recipe: Recipe
    model: object  # PreTrainedModel or PeftModel
    tokenizer: object
    adapter: str | None = None  # adapter bundles: the active adapter's name (or the weighted mix's)
    adapters: tuple[str, ...] = ()  # adapter bundles: every adapter loaded on the base

    @property
    def is_adapter(self) -> bool:
        return bool(self.adapters) or (self.path / ADAPTER_DIR).is_dir()


def load_run(path: str | Path, *, dtype=None) -> LoadedRun:
    """Load a finished run: base + adapter (unmerged) or the full fine-tuned model, with its tokenizer."""
    import torch

    from tuneforge.methods import load_base_model, load_method
    from tuneforge.models.load import load_model, load_tokenizer

    p = Path(path)
    if not (p / RECIPE_FILE).is_file():
        raise TuneforgeError(f"{p} is not a tuneforge run directory (no {RECIPE_FILE})", hint="pass the output.dir of a finished `tuneforge train`")
    recipe = load_recipe(p / RECIPE_FILE)
    dtype = dtype or torch.float32
    if recipe.objective.type == "reward":  # a scalar-head reward model, not a causal LM
        from tuneforge.objectives.reward import load_reward_model as load_model
    if (p / ADAPTER_DIR).is_dir():
        tokenizer = load_tokenizer(str(p / ADAPTER_DIR)) if (p / ADAPTER_DIR / "tokenizer_config.json").is_file() else load_tokenizer(recipe.model.name)
        if recipe.method.type == "qlora":  # the 4-bit base it was trained on, never loaded in full precision
            base = load_base_model(recipe.model.name, recipe.method)
        else:
            base = load_model(recipe.model.name, dtype=dtype)
        model = load_method(base, p / ADAPTER_DIR, recipe.method)  # a peft or bottleneck adapter
    elif (p / MODEL_DIR).is_dir():
        tokenizer = load_tokenizer(str(p / MODEL_DIR))
        model = load_model(str(p / MODEL_DIR), dtype=dtype)
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
    from tuneforge.adapters.bundle import is_bundle_dir, load_bundle

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
    import torch

    from tuneforge.models.load import load_model, load_tokenizer

    model = load_model(target, dtype=dtype or torch.float32)
    model.eval()
    return model, load_tokenizer(target)
