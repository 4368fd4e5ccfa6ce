"""Staged pipelines: one YAML file, several recipes run in order, each stage's output the next one's base.

```yaml
output_dir: runs/pipeline            # stage runs go to runs/pipeline/01-general, 02-domain, ...
defaults:                            # a partial recipe every stage starts from
  model: {name: smollm2-135m-instruct}
  method: {type: lora}
  training: {max_steps: 20}
probes: {general: data/general_test.jsonl}   # optional: scored (loss) after every stage
stages:
  - name: general
    data: {train: data/general.jsonl}
  - name: domain
    recipe: domain.yaml              # optional: a recipe file merged over the defaults
    objective: {type: pretrain}
    data: {train: data/domain.jsonl, format: text}
```

A stage's sections are deep-merged over ``defaults`` (and its ``recipe`` file, in between); the
result must be a valid recipe. The first stage's ``model.name`` is the pipeline's base; a later
stage may not set it: its base is the previous stage's output, merged into full weights when that
stage trained an adapter (recipes/stages.py says why). ``output.dir`` is the pipeline's to choose.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tuneforge.config.load import apply_overrides, format_validation_error, read_recipe_file, validate_recipe
from tuneforge.config.method_table import method_spec
from tuneforge.config.schema import Recipe
from tuneforge.errors import ConfigError

MERGED_DIR = "merged"


class StageSpec(BaseModel):
    """One stage: a name, an optional recipe file, and recipe sections that override the defaults."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(..., pattern=r"^[A-Za-z0-9_.-]+$", description="Stage name (letters, digits, _ . -); names its run directory.")
    recipe: str | None = Field(None, description="A recipe YAML merged over the pipeline's defaults before this stage's own sections.")
    model: dict[str, Any] | None = Field(None, description="First stage only: the pipeline's base model section.")
    method: dict[str, Any] | None = Field(None, description="Recipe `method` section (merged over the defaults).")
    data: dict[str, Any] | None = Field(None, description="Recipe `data` section (merged over the defaults).")
    objective: dict[str, Any] | None = Field(None, description="Recipe `objective` section (merged over the defaults).")
    training: dict[str, Any] | None = Field(None, description="Recipe `training` section (merged over the defaults).")
    eval: dict[str, Any] | None = Field(None, description="Recipe `eval` section (merged over the defaults).")


class PipelineFile(BaseModel):
    """A staged pipeline file (detected by its top-level `stages:` key)."""

    model_config = ConfigDict(extra="forbid")

    output_dir: str = Field("runs/pipeline", description="Where the stage runs, stages.md and stages.json are written.")
    defaults: dict[str, Any] = Field(default_factory=dict, description="A partial recipe every stage starts from.")
    probes: dict[str, str] = Field(
        default_factory=dict,
        description="Held-out files (chat or text) whose loss is measured on the base and after every stage, e.g. to see forgetting.",
    )
    stages: list[StageSpec] = Field(..., min_length=1, description="The stages, run in order.")


def is_stages_file(data: dict[str, Any]) -> bool:
    return isinstance(data, dict) and "stages" in data


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` on top of ``base``: mappings merge key by key, anything else replaces (a copy; inputs untouched)."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        out[key] = deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else copy.deepcopy(value)
    return out


def load_pipeline(path: str | Path, overrides: list[str] | None = None) -> PipelineFile:
    """Read and validate a pipeline file; ``overrides`` are dotted keys into it (e.g. defaults.training.max_steps=2)."""
    data = apply_overrides(read_recipe_file(path), overrides or [])
    try:
        return PipelineFile.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{path} is not a valid pipeline file:\n" + format_validation_error(exc, PipelineFile)) from None


def stage_dir(pipeline: PipelineFile, index: int) -> Path:
    return Path(pipeline.output_dir) / f"{index + 1:02d}-{pipeline.stages[index].name}"


def stage_output_model(recipe: Recipe, run_dir: Path) -> Path:
    """What the next stage loads as its base: the full weights, or the adapter merged into them."""
    return run_dir / ("model" if method_spec(recipe.method.type).saves == "model" else MERGED_DIR)


def stage_recipes(pipeline: PipelineFile, source: str = "pipeline") -> list[Recipe]:
    """Every stage's validated recipe, each based on the previous stage's output (checked before any training)."""
    names = [s.name for s in pipeline.stages]
    if len(set(names)) != len(names):
        raise ConfigError(f"{source}: stage names must differ, got {names}")
    if "output" in pipeline.defaults:
        raise ConfigError(f"{source}: defaults.output is set by the pipeline (output_dir); remove it")
    recipes: list[Recipe] = []
    for i, stage in enumerate(pipeline.stages):
        where = f"{source}: stages[{i}] ({stage.name})"
        if i and stage.model is not None:
            raise ConfigError(f"{where}: model is the previous stage's output; remove stages[{i}].model")
        data = copy.deepcopy(pipeline.defaults)
        if stage.recipe:
            data = deep_merge(data, read_recipe_file(stage.recipe))
        sections = stage.model_dump(exclude={"name", "recipe"}, exclude_none=True)
        data = deep_merge(data, sections)
        if i:
            previous = recipes[-1]
            if not method_spec(previous.method.type).mergeable:
                raise ConfigError(
                    f"{where}: the previous stage's method.type '{previous.method.type}' cannot be merged into a base for this stage",
                    hint="use a mergeable method (lora, full, freeze, ...) in every stage but the last",
                )
            data.setdefault("model", {})["name"] = str(stage_output_model(previous, stage_dir(pipeline, i - 1)))
        data["output"] = {"dir": str(stage_dir(pipeline, i))}
        recipes.append(validate_recipe(data, source=where))
    return recipes
