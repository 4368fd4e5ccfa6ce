"""The steps every recipe shares, each a plain function over a :class:`Run`.

A recipe (``sft.py``, ``preference.py``, ``reward.py``) calls these in order, so the whole run of
its family reads top to bottom in one file; what differs between families (how rows are read, which
model head, which trainer) stays in the recipe. The steps compose the layers below (data toolkit,
data, models, evaluate, train); none of them knows the objective family.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from rich.console import Console
from safetensors import SafetensorError
from transformers import Trainer, set_seed

from tuneforge.config.load import dump_recipe
from tuneforge.config.schema import Recipe
from tuneforge.data.formats import load_records
from tuneforge.data.preference_examples import PairExample, UnpairedExample
from tuneforge.data.prepare import PrepareReport, split_examples
from tuneforge.data.prompts import load_prompts
from tuneforge.data.records import ChatRecord, LoadedData
from tuneforge.datatools.pipeline import prepare_training_file, training_file_path
from tuneforge.evaluate.eval_data import load_eval_data
from tuneforge.evaluate.runner import (
    EvalSettings,
    ModelEval,
    eval_records_from,
    eval_settings_for,
    evaluate_model,
    print_scores,
    write_results,
)
from tuneforge.methods import count_parameters, save_method, saved_dir_name
from tuneforge.models.precision import Precision, choose_precision
from tuneforge.objectives import build_examples, is_preference
from tuneforge.objectives.shared_prefix import declared_randomness, examples_prefix_length, randomness_in_forward
from tuneforge.observe.memory import peak_rss_mb
from tuneforge.observe.plots import plot_loss
from tuneforge.runs import (
    DATA_REPORT_FILE,
    METRICS_FILE,
    RECIPE_FILE,
    SKIPPED_FILE,
    SUMMARY_FILE,
    append_bad_rows,
    prepare_run_dir,
)
from tuneforge.train.callbacks import checkpoint_being_written, checkpoint_to_resume, write_failure
from tuneforge.train.nonfinite import NonfiniteError, nonfinite_summary
from tuneforge.train.distributed import barrier, is_main_process, rank, save_final_model, world_size
from tuneforge.train.speed_plan import SpeedPlan, applied, plan_speed, uncompiled
from tuneforge.train.tracking import check_trackers

Reader = Callable[[str, Recipe], LoadedData]


@dataclass
class TrainResult:
    run_dir: Path
    summary: dict
    eval_results: dict | None


@dataclass
class Run:
    """What every step of one run shares: the recipe, where it writes, how it computes, what it printed."""

    recipe: Recipe
    run_dir: Path
    console: Console
    precision: Precision
    main: bool  # under DDP/FSDP only rank 0 writes run files (train/distributed.py)
    checkpoint: Path | None  # --resume: the committed checkpoint training continues from
    started: float = field(default_factory=time.perf_counter)
    parameters: tuple[int, int] = (0, 0)  # (trainable, total) once the method is applied
    train_examples: int = 0


@dataclass
class RunData:
    """The records a run trains, validates and evaluates on (bad rows already written down)."""

    train: LoadedData
    validation: LoadedData | None
    eval_records: list[ChatRecord]


@dataclass
class Fitted:
    """What training produced, for the summary."""

    plan: SpeedPlan
    training_loss: float
    seconds: float


def start_run(recipe: Recipe, resume: bool, console: Console | None) -> Run:
    """Threads, the run directory and its resolved recipe, seeds and the precision choice (printed)."""
    console = console or Console(stderr=True)
    started = time.perf_counter()
    check_trackers(recipe.training.report_to)  # a missing tracker package fails before any model loads
    if recipe.training.threads:
        torch.set_num_threads(recipe.training.threads)
    main = is_main_process()
    run_dir = prepare_run_dir(recipe, resume) if main else Path(recipe.output.dir)
    checkpoint = checkpoint_to_resume(run_dir) if resume else None
    if main:
        dump_recipe(recipe, run_dir / RECIPE_FILE)
        if checkpoint is None:
            (run_dir / METRICS_FILE).unlink(missing_ok=True)
    barrier()
    set_seed(recipe.training.seed)
    precision = choose_precision(recipe.training.precision)
    console.print(f"[bold]precision[/]: {precision.name} on {precision.device} ({precision.reason})")
    if checkpoint is not None:
        console.print(f"[bold]resuming[/] from {checkpoint}")
    return Run(recipe, run_dir, console, precision, main, checkpoint, started)


def read_chat(path: str, recipe: Recipe) -> LoadedData:
    """Rows in the recipe's data format (alpaca, messages, text, ...), with its bad-row policy."""
    return load_records(path, recipe.data.format, on_bad_rows=recipe.data.on_bad_rows, system_prompt=recipe.data.system_prompt)


def read_prompts(path: str, recipe: Recipe) -> LoadedData:
    """Prompt rows for online RL (a string or a message list, plus the columns the rewards read), with the recipe's bad-row policy."""
    return load_prompts(path, recipe.data.format, on_bad_rows=recipe.data.on_bad_rows, system_prompt=recipe.data.system_prompt)


def read_eval_chat(path: str, recipe: Recipe) -> LoadedData:
    """eval.data is chat data (prompts + reference answers, with a category) or multiple-choice rows, whatever data.format says."""
    return load_eval_data(path, "auto", on_bad_rows=recipe.data.on_bad_rows, system_prompt=recipe.data.system_prompt)


def load_run_data(run: Run, read: Reader, *, read_eval: Reader | None, preference: bool = False) -> RunData:
    """Run the data pipeline, read the training, validation and eval files, and write skipped rows down.

    This comes before any model is loaded, so bad rows stop a run in seconds. ``read_eval=None``: the
    family does not generate, so there is no generation eval.
    """
    recipe = run.recipe
    if run.main:  # data.pipeline/replay (docs/DATA.md) writes into the run dir: once, then every rank reads it
        prepare_training_file(recipe, run.run_dir, run.console, preference=preference)
    barrier()
    train = read(training_file_path(recipe, run.run_dir), recipe)
    validation = read(recipe.data.validation, recipe) if recipe.data.validation else None
    evaluation = read_eval(recipe.eval.data, recipe) if recipe.eval.data and read_eval else None
    skipped = run.run_dir / SKIPPED_FILE
    if run.main:
        skipped.unlink(missing_ok=True)
    for loaded in (train, validation, evaluation):
        if loaded is not None and loaded.bad_rows:
            if run.main:
                append_bad_rows(skipped, loaded.bad_rows)
            run.console.print(f"[yellow]skipped {len(loaded.bad_rows)} bad row(s) of {loaded.path}; see {skipped}[/]")
    eval_records = eval_records_from(evaluation.records, evaluation.path) if evaluation else []
    if recipe.eval.limit:
        eval_records = eval_records[: recipe.eval.limit]
    return RunData(train, validation, eval_records)


ExampleBuilder = Callable[[LoadedData, bool], tuple[list, PrepareReport]]


def build_run_examples(
    run: Run,
    data: RunData,
    tokenizer,
    *,
    builder: ExampleBuilder | None = None,
    validation_view: Callable[[list], list] | None = None,
    report_extra: Callable[[PrepareReport], dict] | None = None,
    note: str = "",
) -> tuple[list, list]:
    """Tokenise with the chat template and the over-length policy; split off validation; write data_report.json.

    An objective whose examples are built differently (cft's prompted chunks) passes ``builder``
    (loaded data, is-validation -> examples and report), ``validation_view`` (how validation examples
    are scored), ``report_extra`` (its own data_report.json keys) and a ``note`` for the summary line;
    the split, the reports and the skipped-rows file stay this function's.
    """
    recipe = run.recipe

    def build(loaded: LoadedData, validation: bool):
        if builder is not None:
            return builder(loaded, validation)
        return build_examples(
            recipe.objective.type, loaded.records, tokenizer, recipe.data.max_length, recipe.data.overlong, data_format=loaded.format
        )

    examples, report = build(data.train, False)
    train_ex, val_ex = split_examples(examples, recipe.data.val_fraction, recipe.training.seed)
    val_report = None
    if data.validation is not None:
        val_ex, val_report = build(data.validation, True)
    if validation_view is not None:
        val_ex = validation_view(val_ex)
    run.train_examples = len(train_ex)
    dropped = report.dropped + (val_report.dropped if val_report else [])
    data_report = {"train": report.as_json(), "train_examples": len(train_ex), "validation_examples": len(val_ex)}
    if report_extra is not None:
        data_report.update(report_extra(report))
    if val_report:
        data_report["validation"] = val_report.as_json()
    if run.main:
        append_bad_rows(run.run_dir / SKIPPED_FILE, dropped)
        (run.run_dir / DATA_REPORT_FILE).write_text(json.dumps(data_report, indent=2))
    run.console.print(f"[bold]data[/]: {report.summary()}{note}; {len(train_ex)} train / {len(val_ex)} validation")
    if report.dropped:
        run.console.print(f"[yellow]{len(report.dropped)} example(s) dropped by the over-length policy; see {run.run_dir / SKIPPED_FILE}[/]")
    return train_ex, val_ex


def evaluate_base(run: Run, model, tokenizer, records: Sequence[ChatRecord]) -> list[ModelEval]:
    """The base model on the held-out examples, before the method is applied (eval.before)."""
    if not (records and run.recipe.eval.before and run.main):
        return []
    run.console.print(f"[bold]evaluating base model[/] on {len(records)} held-out examples")
    evaluated = evaluate_model("base", model, tokenizer, records, eval_settings(run), run.console)
    print_scores(run.console, evaluated, run.recipe.headline_metric)
    return [evaluated]


def eval_settings(run: Run) -> EvalSettings:
    return eval_settings_for(run.recipe, run.precision.autocast_dtype, run.run_dir / "eval")


def report_parameters(run: Run, model) -> None:
    """Count and print the trainable parameters of the model with its method applied."""
    trainable, total = run.parameters = count_parameters(model)
    run.console.print(
        f"[bold]method[/]: {run.recipe.method.type}; trainable parameters {trainable:,} of {total:,} ({100 * trainable / total:.2f}%)"
    )


def longest_row(example, max_length: int) -> int:
    """Tokens in the longest row an example puts into a micro-batch."""
    if isinstance(example, PairExample):
        return max(len(example.chosen.input_ids), len(example.rejected.input_ids))
    if isinstance(example, UnpairedExample):  # its KL row pairs its prompt with another completion
        return max_length
    return len(example.input_ids)


def speed_plan_for(run: Run, model, train_ex: Sequence, trainer: Trainer) -> SpeedPlan:
    """The speed plan of this run's model and trainer (sharded engines keep the model's own kernels)."""
    sharded = bool(getattr(trainer, "is_fsdp_enabled", False) or getattr(trainer, "is_deepspeed_enabled", False))
    config = model.get_base_model().config if hasattr(model, "get_base_model") else model.config
    randomness = randomness_in_forward(model, run.recipe.training.neftune_alpha)
    return planned_speed(run.recipe, run.precision, config, train_ex, sharded=sharded, randomness=randomness)


def planned_speed(
    recipe: Recipe, precision: Precision, config, train_ex: Sequence, *, sharded: bool = False, randomness: str | None = None
) -> SpeedPlan:
    """The run's attention kernel, frozen-weight storage, compilation and prefix sharing (train/speed_plan.py).

    A preference or reward micro-batch holds both sides of each pair (KTO: each row and its KL row),
    so its batch has twice the rows. ``randomness``: what the built model found random in its
    forward (:func:`randomness_in_forward`); without a model (the dry run) the recipe's and config's
    dropout rates stand in for it.
    """
    lengths = [longest_row(ex, recipe.data.max_length) for ex in train_ex]
    rows_per_example = 2 if is_preference(recipe.objective.type) else 1
    training = recipe.training.model_copy(update={"batch_size": rows_per_example * recipe.training.batch_size})
    lm_rows = [ex.input_ids for ex in train_ex if hasattr(ex, "input_ids")]  # one row per example (not pairs)
    if randomness is None:
        randomness = declared_randomness(recipe.method, config, recipe.training.neftune_alpha)
    return plan_speed(
        training, recipe.method, precision, config, lengths,
        sharded=sharded, distributed=world_size() > 1, objective=recipe.objective.type,
        shared_tokens=examples_prefix_length(lm_rows) if len(lm_rows) == len(train_ex) else 0, randomness=randomness,
    )  # fmt: skip


def fit(run: Run, trainer: Trainer, plan: SpeedPlan) -> Fitted:
    """Train under the speed plan (printed), from the --resume checkpoint if there is one."""
    run.console.print(f"[bold]speed[/]: {plan.describe()}")
    started = time.perf_counter()
    if hasattr(trainer, "share_prefix"):  # TuneforgeTrainer's fast loss path
        trainer.share_prefix = plan.share_prefix
    try:
        with applied(trainer.model, plan):
            output = trainer.train(resume_from_checkpoint=str(run.checkpoint) if run.checkpoint else None)
    except NonfiniteError as exc:  # training.nonfinite=stop: record why the run ended, write no final weights
        if run.main:
            stopped = {"error": exc.message, "nonfinite": exc.event, "steps": trainer.state.global_step, "method": run.recipe.method.type}
            (run.run_dir / SUMMARY_FILE).write_text(json.dumps(stopped, indent=2))
        raise
    except (OSError, RuntimeError) as exc:
        if run.main and checkpoint_being_written(run.run_dir, trainer.state.global_step):  # e.g. the disk filled up
            raise write_failure(exc, run.run_dir, f"a checkpoint at step {trainer.state.global_step}") from exc
        raise
    return Fitted(plan, output.training_loss, time.perf_counter() - started)


def finish(run: Run, trainer: Trainer, fitted: Fitted, tokenizer, evals: list[ModelEval], eval_records: Sequence[ChatRecord]) -> TrainResult:
    """Save the final weights, plot the loss, evaluate the tuned model, write summary.json."""
    recipe = run.recipe
    final_dir = run.run_dir / saved_dir_name(recipe.method)  # adapter/ or model/
    try:
        save_final_model(trainer, final_dir, lambda: save_method(trainer.model, final_dir, recipe.method))
    except (OSError, RuntimeError, SafetensorError) as exc:  # e.g. the disk filled up
        if run.main:  # half-written final weights must not pass for a finished run
            shutil.rmtree(final_dir, ignore_errors=True)
        raise write_failure(exc, run.run_dir, f"the final weights to {final_dir}") from exc
    if not run.main:  # the main process evaluates and writes the report and summary
        return TrainResult(run.run_dir, {"rank": rank(), "steps": trainer.state.global_step}, None)
    tokenizer.save_pretrained(str(final_dir))
    run.console.print(f"[bold]saved[/] {final_dir}")
    plot_loss(run.run_dir / METRICS_FILE, run.run_dir / "plots" / "loss.png")
    results = evaluate_tuned(run, trainer.model, tokenizer, evals, eval_records)
    summary = write_summary(run, trainer, fitted, results)
    run.console.print(
        f"[bold green]done[/] in {summary['wall_seconds']:.0f}s: {summary['steps']} steps, "
        f"{summary['train_tokens_per_s']} train tokens/s, peak memory {summary['peak_rss_mb']:.0f} MB -> {run.run_dir}"
    )
    return TrainResult(run.run_dir, summary, results)


def evaluate_tuned(run: Run, model, tokenizer, evals: list[ModelEval], records: Sequence[ChatRecord]) -> dict | None:
    """The tuned model on the same held-out examples; writes eval/ with the before/after report."""
    if not records:
        return None
    run.console.print(f"[bold]evaluating tuned model[/] on {len(records)} held-out examples")
    settings = eval_settings(run)
    with uncompiled():  # compiled blocks (training.compile) are for training shapes only
        evals.append(evaluate_model("tuned", model, tokenizer, records, settings, run.console))
    print_scores(run.console, evals[-1], run.recipe.headline_metric)
    results = write_results(
        run.run_dir / "eval", str(run.recipe.eval.data), records, evals, settings, metrics_jsonl=run.run_dir / METRICS_FILE, console=run.console
    )
    run.console.print(f"[bold]report[/]: {run.run_dir / 'eval' / 'report.html'}")
    return results


def write_summary(run: Run, trainer: Trainer, fitted: Fitted, results: dict | None) -> dict:
    """summary.json: precision, throughput, peak memory, timings and the eval scores."""
    tokens_seen = trainer.state.num_input_tokens_seen
    trainable, total = run.parameters
    summary = {
        "precision": run.precision.name,
        "precision_reason": run.precision.reason,
        "device": run.precision.device,
        "torch_threads": torch.get_num_threads(),
        "speed_plan": fitted.plan.describe(),
        "method": run.recipe.method.type,
        "trainable_parameters": trainable,
        "total_parameters": total,
        "train_examples": run.train_examples,
        "steps": trainer.state.global_step,
        "train_loss": fitted.training_loss,
        "train_seconds": round(fitted.seconds, 2),
        "train_tokens_seen": tokens_seen,
        "train_tokens_per_s": round(tokens_seen / fitted.seconds, 1) if fitted.seconds > 0 else None,
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "wall_seconds": round(time.perf_counter() - run.started, 2),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
    }
    summary.update(nonfinite_summary(trainer))
    if results:
        summary["eval"] = results["models"]
    (run.run_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=2))
    return summary
