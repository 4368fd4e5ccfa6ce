"""``tuneforge train RECIPE --dry-run``: check a recipe and its data without loading model weights.

What a real run would stop on in its first seconds is checked here too: the recipe (already valid
when it reaches this function), every data file it names, row by row with the bad-row policy, and,
when the model's tokenizer and config can be read without a download, the tokenised examples with
the over-length policy and the speed plan the run would print. Nothing is written.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import yaml

from tuneforge.config.schema import ONLINE_RL_OBJECTIVES, Recipe
from tuneforge.models.builtin import is_builtin, is_cached
from tuneforge.models.config import load_config
from tuneforge.models.load import load_tokenizer
from tuneforge.models.precision import choose_precision
from tuneforge.objectives import build_examples, is_preference
from tuneforge.recipes.common import planned_speed, read_chat, read_eval_chat, read_prompts
from tuneforge.recipes.preference import read_preference
from tuneforge.train.tracking import check_trackers


@dataclass
class DryRun:
    """What ``--dry-run`` found; ``lines()`` is what the CLI prints."""

    recipe_yaml: str
    data: list[str] = field(default_factory=list)
    examples: str | None = None
    speed_plan: str | None = None
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = ["resolved recipe:", *("  " + line for line in self.recipe_yaml.rstrip().splitlines()), *self.data]
        if self.examples:
            out.append(f"examples: {self.examples}")
        if self.speed_plan:
            out.append(f"speed: {self.speed_plan}")
        return out + [f"note: {n}" for n in self.notes]


def dry_run(recipe: Recipe) -> DryRun:
    """Validate ``recipe``'s data files (and, where possible, tokenise them and plan the speed choices)."""
    check_trackers(recipe.training.report_to)
    result = DryRun(yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False, allow_unicode=True))
    preference = is_preference(recipe.objective.type)
    online = recipe.objective.type in ONLINE_RL_OBJECTIVES
    read = read_prompts if online else read_preference if preference else read_chat
    train = read(recipe.data.train, recipe)  # bad rows raise DataError naming file:line, as training would
    files = [("data.train", train)]
    if recipe.data.validation:
        files.append(("data.validation", read(recipe.data.validation, recipe)))
    if recipe.eval.data and recipe.objective.type != "reward":
        files.append(("eval.data", (read if online else read_eval_chat)(recipe.eval.data, recipe)))
    for key, loaded in files:
        skipped = f", {len(loaded.bad_rows)} bad row(s) would be skipped" if loaded.bad_rows else ""
        result.data.append(f"{key}: {loaded.path}: {len(loaded.records)} rows ({loaded.format}){skipped}")
    if recipe.data.pipeline or recipe.data.replay is not None:
        result.notes.append("data.pipeline / data.replay run at training time; the counts are of data.train before them")
    if is_builtin(recipe.model.name) and not is_cached(recipe.model.name):
        result.notes.append(
            f"the built-in model {recipe.model.name} is fetched on the first real run; "
            "token counts and the speed plan need its tokenizer, so they are not shown"
        )
        return result
    if online:  # the update's rows are prompts plus sampled completions: planned when the run starts
        result.notes.append(f"{recipe.objective.type} samples its training rows; the speed plan is printed when the run starts")
        return result
    tokenizer = load_tokenizer(recipe.model.name)
    examples, report = build_examples(
        recipe.objective.type, train.records, tokenizer, recipe.data.max_length, recipe.data.overlong, data_format=train.format,
        cft=recipe.objective.cft,
    )
    result.examples = report.summary()
    precision = choose_precision(recipe.training.precision)
    result.speed_plan = planned_speed(recipe, precision, load_config(recipe.model.name), examples).describe()
    return result
