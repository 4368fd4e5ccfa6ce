"""The rft recipe: rejection-sampling fine-tuning, in rounds, top to bottom.

Each round: sample ``objective.rft.samples_per_prompt`` answers per training prompt from the current
model, score them with ``objective.rewards``, keep those accepted (a verifier reward > 0, or a total
over a threshold), and fine-tune on the kept answers with the sft loss (:func:`make_trainer`, as
recipes/sft.py). The next round samples from the model this round trained. The held-out prompts
(``eval.data``, prompt rows) are answered greedily and scored by the same rewards before and after.

The run directory is an sft run's (recipe.yaml, adapter/ or model/, metrics.jsonl, summary.json);
each round's trainer writes its checkpoints under ``rounds/round-N/``, its losses to metrics.jsonl,
and the round's acceptance figures as one ``{"round": N, ...}`` line there and in summary.json.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Sequence

import torch
from rich.console import Console
from transformers import TrainerCallback

from tuneforge.config.rewards import VERIFIER_TYPES
from tuneforge.config.schema import Recipe
from tuneforge.data.prompts import load_prompts
from tuneforge.data.records import LoadedData, PromptRecord
from tuneforge.errors import TuneforgeError
from tuneforge.methods import (
    apply_method,
    load_base_model,
    method_callbacks,
    planned_optimizer_steps,
    save_method,
    saved_dir_name,
)
from tuneforge.models.load import load_tokenizer
from tuneforge.objectives import build_examples
from tuneforge.observe.memory import peak_rss_mb
from tuneforge.observe.plots import plot_loss
from tuneforge.recipes.common import Run, TrainResult, load_run_data, read_prompts, report_parameters, start_run
from tuneforge.rewards import RewardScorer, build_scorer
from tuneforge.rewards.evaluate import evaluate_prompts
from tuneforge.rewards.rejection import accepted, as_chat, sample_completions, verifier_names
from tuneforge.runs import METRICS_FILE, SUMMARY_FILE
from tuneforge.train.arguments import training_arguments
from tuneforge.train.callbacks import run_callbacks
from tuneforge.train.distributed import save_final_model
from tuneforge.train.trainer import make_trainer



def _eval_prompts(run: Run) -> list[PromptRecord]:
    recipe = run.recipe
    if not recipe.eval.data:
        return []
    loaded = load_prompts(recipe.eval.data, "auto", on_bad_rows=recipe.data.on_bad_rows, system_prompt=recipe.data.system_prompt)
    records = list(loaded.records)
    return records[: recipe.eval.limit] if recipe.eval.limit else records  # type: ignore[return-value]


def _evaluate(run: Run, name: str, model, tokenizer, records: Sequence[PromptRecord], scorer: RewardScorer) -> dict | None:
    if not records:
        return None
    e = run.recipe.eval
    result = evaluate_prompts(
        model, tokenizer, records, scorer, max_new_tokens=e.max_new_tokens, batch_size=e.batch_size, autocast_dtype=run.precision.autocast_dtype
    )
    acc = "n/a" if result["accuracy"] is None else f"{result['accuracy']:.3f}"
    run.console.print(f"[bold]{name}[/] on {len(records)} held-out prompts: mean reward {result['reward']:.3f}, accuracy {acc}")
    return result


def _round_prompts(records: Sequence[PromptRecord], recipe: Recipe, round_no: int) -> list[PromptRecord]:
    n = recipe.objective.rft.prompts_per_round
    if not n or n >= len(records):
        return list(records)
    return random.Random(recipe.training.seed * 1000 + round_no).sample(list(records), n)


def _append_metrics(run: Run, row: dict) -> None:
    with (run.run_dir / METRICS_FILE).open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(row) + "\n")


def run_round(run: Run, round_no: int, model, tokenizer, prompts: Sequence[PromptRecord], scorer: RewardScorer, callbacks) -> tuple[dict, object]:
    """One sample -> score -> keep -> fine-tune round; returns its stats (the caller writes them to metrics.jsonl)
    and its trainer (None if nothing was kept)."""
    recipe, options = run.recipe, run.recipe.objective.rft
    started = time.perf_counter()
    completions = sample_completions(
        model, tokenizer, prompts, options, autocast_dtype=run.precision.autocast_dtype,
        on_batch=lambda done, total: run.console.print(f"  round {round_no}: sampled {done}/{total} prompts"),
    )  # fmt: skip
    repeated = [p for p in prompts for _ in range(options.samples_per_prompt)]
    scores = scorer(repeated, completions)
    kept, passed = accepted(prompts, completions, scores, options, verifier_names(scorer, VERIFIER_TYPES))
    sampled_s = time.perf_counter() - started
    stats = {
        "round": round_no,
        "prompts": len(prompts),
        "samples": len(completions),
        "accepted": passed,
        "acceptance_rate": passed / len(completions),
        "prompts_with_accepted": len({id(k.record) for k in kept}) / len(prompts),
        "kept": len(kept),
        **scorer.stats(scores, options.samples_per_prompt),
        "sample_seconds": round(sampled_s, 2),
    }
    run.console.print(
        f"[bold]round {round_no}[/]: {passed}/{len(completions)} samples accepted ({stats['acceptance_rate']:.1%}), "
        f"{len(kept)} kept from {len(prompts)} prompts; mean reward {stats['reward']:.3f}"
    )
    trainer = None
    if kept:
        examples, report = build_examples("sft", as_chat(kept), tokenizer, recipe.data.max_length, recipe.data.overlong, data_format="messages")
        stats["train_examples"] = len(examples)
        if examples:
            args = training_arguments(recipe, run.run_dir / "rounds" / f"round-{round_no}", run.precision, has_val=False)
            all_callbacks = run_callbacks(run.run_dir, run.console, recipe.training, [*method_callbacks(model, recipe.method), *callbacks])
            trainer = make_trainer(model, args, tokenizer, examples, [], all_callbacks, packing=recipe.training.packing)
            output = trainer.train()
            stats.update(train_loss=output.training_loss, steps=trainer.state.global_step, train_tokens_seen=trainer.state.num_input_tokens_seen)
    else:
        run.console.print(f"[yellow]round {round_no}: no sample was accepted, nothing to train on this round[/]")
    stats["round_seconds"] = round(time.perf_counter() - started, 2)
    return stats, trainer


def train_rft(
    recipe: Recipe, *, resume: bool = False, console: Console | None = None, callbacks: Sequence[TrainerCallback] = ()
) -> TrainResult:
    """Run an rft recipe; ``callbacks`` are added to each round's trainer."""
    if resume:
        raise TuneforgeError("rft runs cannot --resume yet: a round's samples are not checkpointed", hint="start the run again without --resume")
    run = start_run(recipe, resume, console)
    data = load_run_data(run, read_prompts, read_eval=None)  # bad rows stop the run before any model loads
    eval_records = _eval_prompts(run)

    run.console.print(f"[bold]model[/]: {recipe.model.name}")
    tokenizer = load_tokenizer(recipe.model.name)
    scorer = build_scorer(recipe.objective.rewards, console=run.console, tokenizer=tokenizer)
    model = load_base_model(recipe.model.name, recipe.method, dtype=torch.float32)
    model.config.use_cache = False  # training batches build the full mask; generation passes use_cache itself
    before = _evaluate(run, "base model", model, tokenizer, eval_records, scorer) if recipe.eval.before else None

    options, t = recipe.objective.rft, recipe.training
    per_round = min(len(data.train.records), options.prompts_per_round or len(data.train.records)) * options.max_per_prompt
    model = apply_method(model, recipe.method, total_steps=planned_optimizer_steps(per_round, t.batch_size, t.grad_accum, t.epochs, t.max_steps))
    report_parameters(run, model)

    rounds, trainer, after = [], None, None
    for round_no in range(1, options.rounds + 1):
        prompts = _round_prompts(data.train.records, recipe, round_no)  # type: ignore[arg-type]
        stats, round_trainer = run_round(run, round_no, model, tokenizer, prompts, scorer, callbacks)
        if options.eval_each_round:  # the last round's evaluation is the tuned model's: _finish does not score it again
            after = _evaluate(run, f"after round {round_no}", model, tokenizer, eval_records, scorer)
            stats["held_out"] = _held_out_figures(after)
        _append_metrics(run, stats)
        rounds.append(stats)
        trainer = round_trainer or trainer
    return _finish(run, model, trainer, tokenizer, rounds, before, eval_records, scorer, after)


def _held_out_figures(result: dict | None) -> dict | None:
    """The held-out mean reward, per-reward means and accuracy of one evaluation (no samples)."""
    return {m: result[m] for m in ("reward", "rewards", "accuracy")} if result else None


def _finish(
    run: Run, model, trainer, tokenizer, rounds: list[dict], before: dict | None, eval_records, scorer: RewardScorer, after: dict | None = None
) -> TrainResult:
    """Save the weights, plot the loss, evaluate the tuned model (unless the last round did: ``after``), write summary.json."""
    recipe = run.recipe
    final_dir = run.run_dir / saved_dir_name(recipe.method)
    if trainer is not None:
        save_final_model(trainer, final_dir, lambda: save_method(model, final_dir, recipe.method))
    else:  # no round kept anything: the method is saved untrained, so the run dir is still complete
        save_method(model, final_dir, recipe.method)
    tokenizer.save_pretrained(str(final_dir))
    run.console.print(f"[bold]saved[/] {final_dir}")
    plot_loss(run.run_dir / METRICS_FILE, run.run_dir / "plots" / "loss.png")
    if after is None:
        after = _evaluate(run, "tuned model", model, tokenizer, eval_records, scorer)
    results = {"base": before, "tuned": after} if eval_records else None
    if results:
        (run.run_dir / "eval").mkdir(exist_ok=True)
        (run.run_dir / "eval" / "rewards.json").write_text(json.dumps(results, indent=2))
    trainable, total = run.parameters
    summary = {
        "objective": "rft",
        "precision": run.precision.name,
        "device": run.precision.device,
        "method": recipe.method.type,
        "trainable_parameters": trainable,
        "total_parameters": total,
        "rewards": scorer.weights,
        "rounds": rounds,
        "acceptance_rate": [r["acceptance_rate"] for r in rounds],
        "steps": sum(r.get("steps", 0) for r in rounds),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "wall_seconds": round(time.perf_counter() - run.started, 2),
        "torch": torch.__version__,
    }
    if results:
        summary["eval"] = {k: _held_out_figures(v) for k, v in results.items()}
    (run.run_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=2))
    run.console.print(f"[bold green]done[/] in {summary['wall_seconds']:.0f}s: {options_line(rounds)} -> {run.run_dir}")
    return TrainResult(run.run_dir, summary, results)


def options_line(rounds: list[dict]) -> str:
    return ", ".join(f"round {r['round']} accepted {r['acceptance_rate']:.1%}" for r in rounds)
