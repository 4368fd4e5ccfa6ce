"""The training run, top to bottom: recipe -> data -> model -> method -> Trainer -> run directory -> eval.

Data is read and validated before the model loads, so bad rows fail in seconds, not after a long
model load. The base model is evaluated before the method is applied (identical outputs for identity-
at-init methods, and no adapter to disable), the tuned one after training, both on the same examples.
"""

from __future__ import annotations

import json
import resource
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from datasets import Dataset
from rich.console import Console
from transformers import (
    EarlyStoppingCallback,
    PrinterCallback,
    TrainingArguments,
    set_seed,
)

from tuneforge.config.load import dump_recipe
from tuneforge.config.schema import Recipe, TrainingSection
from tuneforge.data.collate import PadCollator
from tuneforge.data.formats import load_records
from tuneforge.data.packing import PackedCollator
from tuneforge.data.prepare import PrepareReport, split_examples, to_features
from tuneforge.data.records import BadRow, LoadedData
from tuneforge.errors import TuneforgeError
from tuneforge.evaluate.runner import (
    EvalSettings,
    ModelEval,
    eval_records_from,
    evaluate_model,
    write_results,
)
from tuneforge.methods import (
    apply_method,
    count_parameters,
    load_base_model,
    loraplus_ratio,
    method_callbacks,
    planned_optimizer_steps,
    save_method,
    saved_dir_name,
)
from tuneforge.methods.prompt import is_prompt_learning
from tuneforge.objectives import build_examples, is_preference
from tuneforge.objectives.losses import trainer_loss
from tuneforge.runs import (
    ADAPTER_DIR,
    CHECKPOINTS_DIR,
    METRICS_FILE,
    MODEL_DIR,
    RECIPE_FILE,
)
from tuneforge.train.callbacks import (
    CheckpointCommit,
    MetricsLogger,
    RichProgress,
    latest_committed_checkpoint,
)
from tuneforge.train.distributed import (
    barrier,
    is_main_process,
    rank,
    save_final_model,
    world_size,
)
from tuneforge.models.precision import Precision, choose_precision
from tuneforge.train.speed_plan import SpeedPlan, plan_speed
from tuneforge.train.speed_plan import applied as speed_plan_applied
from tuneforge.train.speed_plan import uncompiled as speed_plan_uncompiled
from tuneforge.train.trainer import TuneforgeTrainer


@dataclass
class TrainResult:
    run_dir: Path
    summary: dict
    eval_results: dict | None


def peak_rss_mb() -> float:
    """Peak resident memory of this process image (VmHWM from /proc, else ru_maxrss; both KiB).

    ``ru_maxrss`` is not read first because Linux folds a parent's peak into its child's at exec, so a
    run launched from a large process (a benchmark driver) would report the parent's peak.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def prepare_run_dir(recipe: Recipe, resume: bool) -> Path:
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
            # Never delete a directory tuneforge did not write.
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


def _load(path: str, recipe: Recipe) -> LoadedData:
    return load_records(path, recipe.data.format, on_bad_rows=recipe.data.on_bad_rows, system_prompt=recipe.data.system_prompt)


def _load_preference(path: str, recipe: Recipe) -> LoadedData:
    """Preference objectives read prompt/chosen/rejected (or KTO prompt/completion/label) rows."""
    from tuneforge.data.preference import load_preference_records

    return load_preference_records(path, recipe.data.format, on_bad_rows=recipe.data.on_bad_rows, system_prompt=recipe.data.system_prompt)


def _load_eval_chat(path: str, recipe: Recipe) -> LoadedData:
    """eval.data of a preference run is chat data (prompts + reference answers) whatever data.format says."""
    return load_records(path, "auto", on_bad_rows=recipe.data.on_bad_rows, system_prompt=recipe.data.system_prompt)


def _write_rows(path: Path, rows: list[BadRow]) -> None:
    if rows and is_main_process():
        with path.open("a", encoding="utf-8") as fh:
            for row in rows:
                fh.write(json.dumps(row.as_json(), ensure_ascii=False, default=str) + "\n")


def training_arguments(recipe: Recipe, run_dir: Path, precision: Precision, has_val: bool) -> TrainingArguments:
    t = recipe.training
    every_epoch = {"eval_strategy": "epoch" if has_val else "no", "save_strategy": "epoch"}
    if t.eval_steps and has_val:
        every_epoch["eval_strategy"] = "steps"
    if t.save_steps:
        every_epoch["save_strategy"] = "steps"
    return TrainingArguments(
        output_dir=str(run_dir / CHECKPOINTS_DIR),
        num_train_epochs=t.epochs,
        max_steps=t.max_steps or -1,
        per_device_train_batch_size=t.batch_size,
        per_device_eval_batch_size=t.batch_size,
        gradient_accumulation_steps=t.grad_accum,
        learning_rate=t.learning_rate,
        lr_scheduler_type=t.lr_scheduler,
        warmup_steps=t.warmup_ratio,  # a float < 1 is a ratio of total steps in transformers 5
        weight_decay=t.weight_decay,
        max_grad_norm=t.max_grad_norm,
        seed=t.seed,
        data_seed=t.seed,
        bf16=precision.name == "bf16",
        fp16=precision.name == "fp16",
        use_cpu=precision.device == "cpu",
        logging_steps=t.logging_steps,
        activation_checkpointing=t.activation_checkpointing,
        # non-reentrant checkpointing needs no input that requires grad, so frozen embeddings (LoRA) just work
        activation_checkpointing_kwargs={"use_reentrant": False} if t.activation_checkpointing else None,
        eval_steps=t.eval_steps,
        save_steps=t.save_steps,
        save_total_limit=t.save_total_limit,
        load_best_model_at_end=bool(t.early_stopping_patience),
        metric_for_best_model="eval_loss" if t.early_stopping_patience else None,
        greater_is_better=False if t.early_stopping_patience else None,
        include_num_input_tokens_seen="non_padding",
        prediction_loss_only=True,  # validation needs the loss only; never gather full-vocabulary logits
        disable_tqdm=True,
        report_to=[],
        remove_unused_columns=False,
        dataloader_num_workers=0,
        **every_epoch,
    )


def make_trainer(
    model, args: TrainingArguments, tokenizer, train_ex, val_ex, callbacks=(), training: TrainingSection | None = None
) -> TuneforgeTrainer:
    """The Trainer every objective of this module trains with: packed (or padded) batches, token-normalised loss.

    ``training`` supplies the speed options (packing, fused head chunks); without it batches are padded.
    """
    # Prompt-learning adapters prepend virtual tokens to every row, which a joined row cannot carry.
    packing = training is not None and training.packing and not is_prompt_learning(model)
    trainer = TuneforgeTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(to_features(train_ex)),
        eval_dataset=Dataset.from_list(to_features(val_ex)) if val_ex else None,
        data_collator=PackedCollator() if packing else PadCollator(tokenizer.pad_token_id),
        compute_loss_func=trainer_loss,
        callbacks=list(callbacks),
    )
    trainer.head_chunk_rows = training.head_chunk_rows if training is not None else None
    trainer.remove_callback(PrinterCallback)
    return trainer


def _longest_row(example, max_length: int) -> int:
    """Tokens in the longest row an example puts into a micro-batch."""
    from tuneforge.data.preference_examples import PairExample, UnpairedExample

    if isinstance(example, PairExample):
        return max(len(example.chosen.input_ids), len(example.rejected.input_ids))
    if isinstance(example, UnpairedExample):  # its KL row pairs its prompt with another completion
        return max_length
    return len(example.input_ids)


def speed_plan_for(recipe: Recipe, precision: Precision, model, train_ex, trainer) -> SpeedPlan:
    """The run's attention kernel, frozen-weight storage and compilation (train/speed_plan.py).

    Preference and reward objectives get the attention kernel and frozen-weight storage (every
    forward of theirs, the reference one included, runs under the trainer's autocast; precomputed
    reference log-probs are taken before the plan applies) but are not compiled: the policy and the
    adapter-disabled reference pass would each compile their own graph, which was not measured.
    """
    sharded = bool(getattr(trainer, "is_fsdp_enabled", False) or getattr(trainer, "is_deepspeed_enabled", False))
    config = model.get_base_model().config if hasattr(model, "get_base_model") else model.config
    preference = is_preference(recipe.objective.type) or recipe.objective.type == "reward"
    lengths = [_longest_row(ex, recipe.data.max_length) for ex in train_ex]
    # a preference micro-batch holds both sides of each pair (KTO: each row and its KL row): twice the rows
    training = recipe.training.model_copy(update={"batch_size": 2 * recipe.training.batch_size}) if preference else recipe.training
    return plan_speed(
        training, recipe.method, precision, config, lengths,
        sharded=sharded, distributed=world_size() > 1, objective=recipe.objective.type,
    )  # fmt: skip


def train(recipe: Recipe, *, resume: bool = False, console: Console | None = None, callbacks: Sequence = ()) -> TrainResult:
    """Run a whole recipe and return the run directory with its summary and evaluation results.

    ``callbacks`` (transformers ``TrainerCallback`` objects) are added to the run's own."""
    from tuneforge.models.load import load_tokenizer

    console = console or Console(stderr=True)
    t_start = time.perf_counter()
    if recipe.training.threads:
        torch.set_num_threads(recipe.training.threads)
    main = is_main_process()  # under DDP/FSDP only rank 0 writes run files (train/distributed.py)
    run_dir = prepare_run_dir(recipe, resume) if main else Path(recipe.output.dir)
    if main:
        dump_recipe(recipe, run_dir / RECIPE_FILE)
    barrier()
    set_seed(recipe.training.seed)
    precision = choose_precision(recipe.training.precision)
    console.print(f"[bold]precision[/]: {precision.name} on {precision.device} ({precision.reason})")

    # Data first: bad rows stop the run before any model is loaded.
    preference = is_preference(recipe.objective.type)
    load_data = _load_preference if preference else _load
    from tuneforge.datatools.pipeline import prepare_training_file, training_file_path

    if main:  # data.pipeline/replay (docs/DATA.md) writes into the run dir: once, then every rank reads it
        prepare_training_file(recipe, run_dir, console, preference=preference)
    barrier()
    train_path = training_file_path(recipe, run_dir)
    train_data = load_data(train_path, recipe)
    val_data = load_data(recipe.data.validation, recipe) if recipe.data.validation else None
    if recipe.eval.data and recipe.objective.type == "reward":
        console.print("[yellow]eval.data is ignored for objective.type reward (a reward model does not generate); its validation reports pair accuracy[/]")
    eval_data = None
    if recipe.eval.data and recipe.objective.type != "reward":
        eval_data = (_load_eval_chat if preference else _load)(recipe.eval.data, recipe)
    skipped = run_dir / "skipped_rows.jsonl"
    if main:
        skipped.unlink(missing_ok=True)
    for loaded in (train_data, val_data, eval_data):
        if loaded is not None and loaded.bad_rows:
            _write_rows(skipped, loaded.bad_rows)
            console.print(f"[yellow]skipped {len(loaded.bad_rows)} bad row(s) of {loaded.path}; see {skipped}[/]")
    eval_records = eval_records_from(eval_data.records, eval_data.path) if eval_data else []
    if recipe.eval.limit:
        eval_records = eval_records[: recipe.eval.limit]

    console.print(f"[bold]model[/]: {recipe.model.name}")
    tokenizer = load_tokenizer(recipe.model.name)
    examples, report = build_examples(
        recipe.objective.type, train_data.records, tokenizer, recipe.data.max_length, recipe.data.overlong, data_format=train_data.format
    )
    train_ex, val_ex = split_examples(examples, recipe.data.val_fraction, recipe.training.seed)
    val_report: PrepareReport | None = None
    if val_data is not None:
        val_ex, val_report = build_examples(
            recipe.objective.type, val_data.records, tokenizer, recipe.data.max_length, recipe.data.overlong, data_format=val_data.format
        )
    _write_rows(skipped, report.dropped + (val_report.dropped if val_report else []))
    data_report = {"train": report.as_json(), "train_examples": len(train_ex), "validation_examples": len(val_ex)}
    if val_report:
        data_report["validation"] = val_report.as_json()
    if main:
        (run_dir / "data_report.json").write_text(json.dumps(data_report, indent=2))
    console.print(f"[bold]data[/]: {report.summary()}; {len(train_ex)} train / {len(val_ex)} validation")
    if report.dropped:
        console.print(f"[yellow]{len(report.dropped)} example(s) dropped by the over-length policy; see {skipped}[/]")

    if recipe.objective.type == "reward":
        from tuneforge.objectives.reward import load_reward_model

        model = load_reward_model(recipe.model.name, dtype=torch.float32, pad_token_id=tokenizer.pad_token_id)
    else:  # qlora: the 4-bit base is loaded directly, never in full precision first
        model = load_base_model(recipe.model.name, recipe.method, dtype=torch.float32)
    model.config.use_cache = False  # packed/padded training must build the full attention mask

    eval_settings = EvalSettings(
        metrics=recipe.eval.metrics,
        max_new_tokens=recipe.eval.max_new_tokens,
        batch_size=recipe.eval.batch_size,
        max_length=recipe.data.max_length,
        num_samples=recipe.eval.num_samples,
        task_metric=recipe.headline_metric,
        autocast_dtype=precision.autocast_dtype,
    )
    evals: list[ModelEval] = []
    if eval_records and recipe.eval.before and main:
        console.print(f"[bold]evaluating base model[/] on {len(eval_records)} held-out examples")
        evals.append(evaluate_model("base", model, tokenizer, eval_records, eval_settings, console))
        _print_scores(console, evals[-1], recipe.headline_metric)

    if recipe.objective.type == "reward":
        from tuneforge.objectives.reward import apply_reward_method

        model = apply_reward_method(model, recipe.method)
    else:
        t = recipe.training
        steps = planned_optimizer_steps(len(train_ex), t.batch_size, t.grad_accum, t.epochs, t.max_steps)
        model = apply_method(model, recipe.method, total_steps=steps)
    trainable, total = count_parameters(model)
    console.print(f"[bold]method[/]: {recipe.method.type}; trainable parameters {trainable:,} of {total:,} ({100 * trainable / total:.2f}%)")

    args = training_arguments(recipe, run_dir, precision, has_val=bool(val_ex))
    callbacks = [MetricsLogger(run_dir / METRICS_FILE), RichProgress(console), CheckpointCommit(), *callbacks]
    if recipe.training.early_stopping_patience:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=recipe.training.early_stopping_patience))
    callbacks += method_callbacks(model, recipe.method)  # e.g. AdaLoRA's per-step rank reallocation
    if preference:
        from tuneforge.train.preference_trainer import make_preference_trainer

        trainer = make_preference_trainer(
            recipe.objective, model, args, tokenizer, train_ex, val_ex, callbacks,
            run_dir=run_dir, max_length=recipe.data.max_length, console=console,
        )
    else:
        trainer = make_trainer(model, args, tokenizer, train_ex, val_ex, callbacks, training=recipe.training)
        trainer.loraplus_lr_ratio = loraplus_ratio(recipe.method)  # LoRA+: B matrices in their own LR group
    checkpoint = None
    if resume:
        checkpoint = latest_committed_checkpoint(run_dir / CHECKPOINTS_DIR)
        if checkpoint is None:
            raise TuneforgeError(f"--resume: no complete checkpoint in {run_dir / CHECKPOINTS_DIR}", hint="start the run again without --resume")
        console.print(f"[bold]resuming[/] from {checkpoint}")
    elif main and (run_dir / METRICS_FILE).exists():
        (run_dir / METRICS_FILE).unlink()
    plan = speed_plan_for(recipe, precision, model, train_ex, trainer)
    console.print(f"[bold]speed[/]: {plan.describe()}")
    t_train = time.perf_counter()
    with speed_plan_applied(trainer.model, plan):
        output = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    train_s = time.perf_counter() - t_train

    final_dir = run_dir / saved_dir_name(recipe.method)  # adapter/ or model/
    save_final_model(trainer, final_dir, lambda: save_method(trainer.model, final_dir, recipe.method))
    if not main:  # the main process evaluates and writes the report and summary
        return TrainResult(run_dir, {"rank": rank(), "steps": trainer.state.global_step}, None)
    tokenizer.save_pretrained(str(final_dir))
    console.print(f"[bold]saved[/] {final_dir}")

    from tuneforge.observe.plots import plot_loss

    plot_loss(run_dir / METRICS_FILE, run_dir / "plots" / "loss.png")

    results = None
    if eval_records:
        console.print(f"[bold]evaluating tuned model[/] on {len(eval_records)} held-out examples")
        with speed_plan_uncompiled():  # compiled blocks (training.compile) are for training shapes only
            evals.append(evaluate_model("tuned", trainer.model, tokenizer, eval_records, eval_settings, console))
        _print_scores(console, evals[-1], recipe.headline_metric)
        results = write_results(
            run_dir / "eval", str(recipe.eval.data), eval_records, evals, eval_settings, metrics_jsonl=run_dir / METRICS_FILE
        )
        console.print(f"[bold]report[/]: {run_dir / 'eval' / 'report.html'}")

    tokens_seen = trainer.state.num_input_tokens_seen
    summary = {
        "precision": precision.name,
        "precision_reason": precision.reason,
        "device": precision.device,
        "torch_threads": torch.get_num_threads(),
        "speed_plan": plan.describe(),
        "method": recipe.method.type,
        "trainable_parameters": trainable,
        "total_parameters": total,
        "train_examples": len(train_ex),
        "steps": trainer.state.global_step,
        "train_loss": output.training_loss,
        "train_seconds": round(train_s, 2),
        "train_tokens_seen": tokens_seen,
        "train_tokens_per_s": round(tokens_seen / train_s, 1) if train_s > 0 else None,
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "wall_seconds": round(time.perf_counter() - t_start, 2),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
    }
    if results:
        summary["eval"] = results["models"]
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    console.print(
        f"[bold green]done[/] in {summary['wall_seconds']:.0f}s: {summary['steps']} steps, "
        f"{summary['train_tokens_per_s']} train tokens/s, peak memory {summary['peak_rss_mb']:.0f} MB -> {run_dir}"
    )
    return TrainResult(run_dir, summary, results)


def _print_scores(console: Console, ev: ModelEval, headline: str | None) -> None:
    keys = [k for k in ("eval_loss", "perplexity", headline) if k and k in ev.scores]
    console.print("  " + ", ".join(f"{k} {ev.scores[k]:.4f}" for k in keys) + f"  ({ev.timings['generate_s']:.0f}s generation)")

