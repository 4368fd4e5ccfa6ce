"""The run directory: the contract between ``train`` and every later command (a leaf: loading a run
back into a model lives in :mod:`tuneforge.targets`).

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

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import yaml

from tuneforge.config.schema import Recipe
from tuneforge.data.records import BadRow
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


SKIPPED_FILE = "skipped_rows.jsonl"
SUMMARY_FILE = "summary.json"
DATA_REPORT_FILE = "data_report.json"


def prepare_run_dir(recipe: Recipe, resume: bool) -> Path:
    """Create (or, for ``--resume``, reopen) ``output.dir``; never delete a directory tuneforge did not write."""
    run_dir = Path(recipe.output.dir)
    finished = (run_dir / ADAPTER_DIR).exists() or (run_dir / MODEL_DIR).exists()
    if resume:
        if not (run_dir / RECIPE_FILE).is_file():
            raise TuneforgeError(f"--resume: {run_dir} holds no run to resume", hint="drop --resume to start a new run")
        return run_dir
    if finished and not recipe.output.overwrite:
        raise TuneforgeError(
            f"output.dir {run_dir} already holds a finished run",
            hint="choose another output.dir=..., set output.overwrite=true, or continue it with --resume",
        )
    if run_dir.exists() and any(run_dir.iterdir()):
        if not (run_dir / RECIPE_FILE).is_file():
            raise TuneforgeError(
                f"output.dir {run_dir} is not empty and is not a tuneforge run directory",
                hint="choose a new or empty output.dir, e.g. output.dir=runs/my-run",
            )
        if not recipe.output.overwrite and (run_dir / CHECKPOINTS_DIR).exists():
            raise TuneforgeError(
                f"output.dir {run_dir} holds checkpoints of an unfinished run",
                hint="continue it with --resume, or set output.overwrite=true to start over",
            )
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


# Settings that change neither the weights nor a logged loss of a resumed run: they may differ on --resume.
RESUME_MAY_CHANGE = ("output.overwrite", "training.threads", "eval.batch_size", "eval.num_samples")


def _flatten(value: object, prefix: str = "") -> dict[str, object]:
    if isinstance(value, dict):
        flat: dict[str, object] = {}
        for key, inner in value.items():
            flat.update(_flatten(inner, f"{prefix}{key}."))
        return flat
    return {prefix.rstrip("."): value}


def recipe_changes(run_dir: Path, recipe: Recipe) -> list[str]:
    """The dotted keys whose value differs between the run's saved recipe and ``recipe`` (``--resume``).

    A resumed run is only the run it continues when it computes the same thing: a changed learning
    rate, data file or step count silently yields a run that is neither the old one nor the new one.
    Both sides are compared after validation, so keys added to the schema since the run started
    compare at their defaults. Keys in :data:`RESUME_MAY_CHANGE` are ignored.
    """
    path = run_dir / RECIPE_FILE
    try:
        saved = Recipe.model_validate(yaml.safe_load(path.read_text(encoding="utf-8"))).model_dump(mode="json")
    except (OSError, yaml.YAMLError, ValueError) as exc:
        raise TuneforgeError(
            f"--resume: the run's saved recipe {path} cannot be read back ({str(exc).splitlines()[0]})",
            hint="start a new run in another output.dir",
        ) from exc
    old, new = _flatten(saved), _flatten(recipe.model_dump(mode="json"))
    keys = [k for k in dict.fromkeys([*old, *new]) if old.get(k) != new.get(k)]
    return [k for k in keys if not any(k == allowed or k.startswith(allowed + ".") for allowed in RESUME_MAY_CHANGE)]


def describe_changes(run_dir: Path, recipe: Recipe, keys: list[str]) -> str:
    """``key: saved -> new`` lines for an error message."""
    saved = _flatten(yaml.safe_load((run_dir / RECIPE_FILE).read_text(encoding="utf-8")) or {})
    new = _flatten(recipe.model_dump(mode="json"))
    return "\n".join(f"  {k}: {saved.get(k, '(default)')!r} -> {new.get(k)!r}" for k in keys)


def append_bad_rows(path: Path, rows: list[BadRow]) -> None:
    """Append skipped or dropped rows, each with its source and reason, to ``skipped_rows.jsonl``."""
    if rows:
        with path.open("a", encoding="utf-8") as fh:
            for row in rows:
                fh.write(json.dumps(row.as_json(), ensure_ascii=False, default=str) + "\n")
