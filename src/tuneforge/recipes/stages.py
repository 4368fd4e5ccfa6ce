"""Run a staged pipeline (config/stages.py): each stage a whole recipe run, its output the next one's base.

Between stages an adapter is merged into full weights (``STAGE/merged``, through the export's
:func:`~tuneforge.export.merge.save_merged`) and the next stage loads that as an ordinary model
directory. We chose merging over continuing one adapter because each stage may use another method
(LoRA, then full tuning, then a smaller LoRA), and a merged base is what every method, the probes
and ``tuneforge eval`` take as is; the price is one full copy of the weights per stage on disk.

After every stage the pipeline writes ``OUTPUT/stages.md`` and ``stages.json``: one row per stage
(and one for the base when there are probes) with its training loss, its own eval scores and the
loss on every probe file. A finished stage (its summary.json written) is skipped on a rerun; its
recipe must be unchanged. A stage stopped half-way continues from its checkpoint with ``resume``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from rich.console import Console
from transformers import TrainerCallback

from tuneforge.config.schema import Recipe
from tuneforge.config.stages import PipelineFile, stage_output_model, stage_recipes
from tuneforge.data.formats import load_records
from tuneforge.errors import TuneforgeError
from tuneforge.evaluate.loss import evaluate_loss
from tuneforge.export.merge import save_merged
from tuneforge.models.load import load_model, load_tokenizer
from tuneforge.objectives import build_examples
from tuneforge.recipes import train
from tuneforge.runs import ADAPTER_DIR, MODEL_DIR, SUMMARY_FILE, describe_changes, recipe_changes
from tuneforge.targets import load_run
from tuneforge.train.callbacks import latest_committed_checkpoint

STAGES_MD = "stages.md"
STAGES_JSON = "stages.json"
PROBES_FILE = "probes.json"


@dataclass
class StageRow:
    """One row of the stage table."""

    stage: str
    run_dir: str | None
    values: dict[str, float | int | str | None] = field(default_factory=dict)
    skipped: bool = False


def run_pipeline(
    pipeline: PipelineFile,
    *,
    resume: bool = False,
    console: Console | None = None,
    callbacks: Sequence[TrainerCallback] = (),
    source: str = "pipeline",
) -> list[StageRow]:
    """Run every stage in order (skipping finished ones) and write the stage table after each."""
    console = console or Console(stderr=True)
    recipes = stage_recipes(pipeline, source)  # every stage is checked before the first one trains
    out = Path(pipeline.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows: list[StageRow] = []
    if pipeline.probes:
        rows.append(StageRow("base", None, _cached_probes(out, recipes[0].model.name, pipeline.probes, recipes[0], None)))
    for i, recipe in enumerate(recipes):
        console.rule(f"stage {i + 1}/{len(recipes)}: {pipeline.stages[i].name}")
        rows.append(run_stage(pipeline, recipe, i, resume=resume, console=console, callbacks=callbacks))
        write_table(out, rows)
    console.print(f"[bold]stages[/]: {out / STAGES_MD}")
    return rows


def stage_finished(run_dir: Path) -> bool:
    """summary.json is written last by a run that finished (a stopped one's carries an error)."""
    summary = run_dir / SUMMARY_FILE
    if not summary.is_file() or not ((run_dir / ADAPTER_DIR).is_dir() or (run_dir / MODEL_DIR).is_dir()):
        return False
    return "error" not in json.loads(summary.read_text(encoding="utf-8"))


def run_stage(
    pipeline: PipelineFile, recipe: Recipe, index: int, *, resume: bool, console: Console, callbacks: Sequence[TrainerCallback]
) -> StageRow:
    """Train one stage (or skip it when finished), prepare the next stage's base, score the probes."""
    run_dir = Path(recipe.output.dir)
    name = pipeline.stages[index].name
    skipped = stage_finished(run_dir)
    if skipped:
        changed = recipe_changes(run_dir, recipe)
        if changed:
            raise TuneforgeError(
                f"stage {name} finished in {run_dir} with another recipe ({len(changed)} key(s) differ):\n" + describe_changes(run_dir, recipe, changed),
                hint=f"delete {run_dir} (and the later stages' directories) to train it again, or restore the pipeline's values",
            )
        console.print(f"[bold]stage {name}[/]: finished in {run_dir}; skipped")
        summary = json.loads((run_dir / SUMMARY_FILE).read_text(encoding="utf-8"))
    else:
        checkpoint = latest_committed_checkpoint(run_dir / "checkpoints") if resume else None
        summary = train(recipe, resume=checkpoint is not None, console=console, callbacks=callbacks).summary
    if index < len(pipeline.stages) - 1:
        next_base(recipe, run_dir, console)
    values = stage_values(recipe, summary)
    if pipeline.probes:
        values.update(_cached_probes(run_dir, None, pipeline.probes, recipe, run_dir))
    return StageRow(name, str(run_dir), values, skipped)


def next_base(recipe: Recipe, run_dir: Path, console: Console) -> Path:
    """The stage's output as a full model directory (an adapter is merged once, atomically)."""
    target = stage_output_model(recipe, run_dir)
    if target.is_dir():
        return target
    loaded = load_run(run_dir)
    save_merged(loaded.model, loaded.tokenizer, target, method=recipe.method)
    console.print(f"[bold]merged[/] {run_dir / ADAPTER_DIR} into {target} (the next stage's base)")
    return target


def stage_values(recipe: Recipe, summary: dict) -> dict:
    """The table columns of one stage: what it trained and its own eval scores (tuned model)."""
    values: dict = {"objective": recipe.objective.type, "method": recipe.method.type, "steps": summary.get("steps")}
    values["train_loss"] = summary.get("train_loss")
    tuned = (summary.get("eval") or {}).get("tuned") or {}
    for key, value in tuned.items():
        if isinstance(value, (int, float)) and key != "eval_tokens":
            values[f"eval {key}"] = value
    return values


def _cached_probes(folder: Path, model_name: str | None, probes: dict[str, str], recipe: Recipe, run_dir: Path | None) -> dict:
    """Probe losses, computed once per model and kept in FOLDER/probes.json (recomputed if the files change)."""
    cache = folder / PROBES_FILE
    if cache.is_file():
        saved = json.loads(cache.read_text(encoding="utf-8"))
        if saved.get("files") == probes:
            return saved["losses"]
    if run_dir is not None:
        loaded = load_run(run_dir)
        model, tokenizer = loaded.model, loaded.tokenizer
    else:
        model, tokenizer = load_model(model_name, dtype=torch.float32), load_tokenizer(model_name)
    losses = probe_losses(model, tokenizer, probes, recipe.data.max_length)
    cache.write_text(json.dumps({"files": probes, "losses": losses}, indent=2))
    return losses


def probe_losses(model, tokenizer, probes: dict[str, str], max_length: int) -> dict[str, float]:
    """Held-out loss on each probe file: a text file on every token, a chat file on the answers."""
    losses = {}
    for name, path in probes.items():
        loaded = load_records(path, "auto")
        objective = "pretrain" if loaded.format == "text" else "sft"
        examples, _ = build_examples(objective, loaded.records, tokenizer, max_length, "truncate", data_format=loaded.format)
        losses[f"probe {name} loss"] = round(evaluate_loss(model, examples, tokenizer.pad_token_id)["eval_loss"], 4)
    return losses


def write_table(out: Path, rows: Sequence[StageRow]) -> tuple[Path, Path]:
    """stages.md (stages x metrics) and stages.json (the same rows, machine-readable)."""
    columns: list[str] = []
    for row in rows:
        columns += [key for key in row.values if key not in columns]
    lines = ["| stage | " + " | ".join(columns) + " |", "| --- |" + " --- |" * len(columns)]
    for row in rows:
        cells = [_cell(row.values.get(key)) for key in columns]
        lines.append(f"| {row.stage}{' (skipped: done)' if row.skipped else ''} | " + " | ".join(cells) + " |")
    md = out / STAGES_MD
    md.write_text("# Stages\n\n" + "\n".join(lines) + "\n", encoding="utf-8")
    js = out / STAGES_JSON
    js.write_text(json.dumps({"columns": columns, "stages": [row.__dict__ for row in rows]}, indent=2))
    return md, js


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)
