"""The rlaif recipe: an AI judge labels pairs of the policy's own samples, and DPO trains on them, top to bottom.

For each prompt row the policy samples two completions (``objective.rlaif.temperature`` > 0, seeded);
the judge (``objective.rlaif.judge``: the built-in model by default, or an OpenAI-compatible endpoint)
compares them under the rubric in both orders (:mod:`tuneforge.rewards.ai_feedback`). Consistent
verdicts become prompt/chosen/rejected rows in ``RUN/rlaif/pairs.jsonl``; inconsistent ones are ties,
written to ``RUN/rlaif/ties.jsonl`` and counted, never trained on. DPO is the preference recipe's
(:func:`make_preference_trainer` with ``objective.preference``'s dpo keys): no second DPO loss here.

- ``mode: offline``: one labelling pass over every prompt, then DPO on the pairs file exactly as
  ``objective.type: dpo`` would read it (``data.format: preference``), for training.epochs / max_steps.
- ``mode: online``: rounds of sample -> label -> ``steps_per_round`` DPO steps on that round's pairs;
  the next round samples from the updated policy. With a LoRA-type method the DPO reference is the
  base with the adapter disabled in every round; with full / freeze training it is a copy of the
  policy at the start of the round.

Held-out prompts (``eval.data``, prompt rows) are answered greedily by the base model (``eval.before``)
and the tuned one, and the judge compares the two in both orders: eval/win_rate.json.
"""

from __future__ import annotations

import json
import random
import shutil
import time
from collections.abc import Sequence

import torch
from rich.console import Console
from transformers import TrainerCallback

from tuneforge.config.schema import Recipe
from tuneforge.data.preference import load_preference_records
from tuneforge.data.records import PromptRecord
from tuneforge.datatools.judge import JudgeBackend
from tuneforge.errors import TuneforgeError
from tuneforge.evaluate.generate import generate_batch
from tuneforge.methods import apply_method, load_base_model, method_callbacks, planned_optimizer_steps, save_method, saved_dir_name
from tuneforge.models.load import load_tokenizer
from tuneforge.objectives import build_examples
from tuneforge.observe.memory import peak_rss_mb
from tuneforge.observe.plots import plot_loss
from tuneforge.recipes.common import Run, TrainResult, fit, load_run_data, planned_speed, read_prompts, report_parameters, start_run, write_summary
from tuneforge.rewards.ai_feedback import (
    LabelledPair,
    judged_win_rate,
    label_pairs,
    labelling_stats,
    pairwise_judge,
    preference_records,
    sample_pairs,
    write_labels,
)
from tuneforge.rewards.scorer import prompt_text
from tuneforge.runs import METRICS_FILE, SUMMARY_FILE
from tuneforge.train.arguments import training_arguments
from tuneforge.train.callbacks import run_callbacks
from tuneforge.train.distributed import save_final_model
from tuneforge.train.preference_trainer import make_preference_trainer
from tuneforge.train.speed_plan import uncompiled

LABELS_DIR = "rlaif"


def dpo_view(recipe: Recipe) -> Recipe:
    """The recipe as the preference trainer and speed plan see it: objective.type dpo, same preference keys."""
    return recipe.model_copy(update={"objective": recipe.objective.model_copy(update={"type": "dpo"})})


def _print_labelling(run: Run, name: str, stats: dict) -> None:
    share = "n/a" if stats["consistent_share"] is None else f"{stats['consistent_share']:.1%}"
    bias = "n/a" if stats["position_bias_rate"] is None else f"{stats['position_bias_rate']:.1%}"
    run.console.print(
        f"[bold]{name}[/]: {stats['pairs']} of {stats['sampled_pairs']} pairs labelled; consistent {share} of {stats['judged']} judged, "
        f"{stats['ties']} ties, position bias {bias}, {stats['identical']} identical and {stats['empty']} empty not judged"
    )


def label_round(run: Run, round_no: int, model, tokenizer, prompts: Sequence[PromptRecord], judge: JudgeBackend) -> tuple[list[LabelledPair], dict]:
    """Sample pairs from the policy as it is, judge them both ways, append them to RUN/rlaif/; returns the labels and stats."""
    options = run.recipe.objective.rlaif
    started = time.perf_counter()
    seed = run.recipe.training.seed * 1000 + round_no
    pairs = sample_pairs(
        model, tokenizer, prompts, options, seed=seed, autocast_dtype=run.precision.autocast_dtype,
        on_batch=lambda done, total: run.console.print(f"  sampled pairs for {done}/{total} prompts"),
    )  # fmt: skip
    sampled = time.perf_counter()
    run.console.print(f"  judging {len(pairs)} pairs in both orders")
    labelled = label_pairs(judge, pairs, options.rubric, round_no=round_no)
    write_labels(run.run_dir / LABELS_DIR, labelled)
    stats = {"round": round_no, "prompts": len(prompts), **labelling_stats(labelled)}
    stats.update(sample_seconds=round(sampled - started, 2), judge_seconds=round(time.perf_counter() - sampled, 2))
    _print_labelling(run, f"round {round_no}" if options.mode == "online" else "labelling", stats)
    return labelled, stats


def _greedy_answers(run: Run, model, tokenizer, records: Sequence[PromptRecord]) -> list[str]:
    e = run.recipe.eval
    run.console.print(f"  answering {len(records)} held-out prompts greedily")
    with uncompiled():
        return generate_batch(
            model, tokenizer, [prompt_text(r, tokenizer) for r in records],
            max_new_tokens=e.max_new_tokens, batch_size=e.batch_size, autocast_dtype=run.precision.autocast_dtype,
        )  # fmt: skip


def train_rlaif(
    recipe: Recipe,
    *,
    resume: bool = False,
    console: Console | None = None,
    callbacks: Sequence[TrainerCallback] = (),
    judge: JudgeBackend | None = None,
) -> TrainResult:
    """Run an rlaif recipe; ``callbacks`` are added to every DPO trainer, ``judge`` (``ask(prompts) -> replies``)
    replaces the recipe's objective.rlaif.judge (tests and benchmarks pass a stub or a shared one)."""
    if resume and recipe.objective.rlaif.mode == "online":
        raise TuneforgeError(
            "online rlaif runs cannot --resume yet: each round's pairs come from the policy of that moment, which is not checkpointed",
            hint="start the run again without --resume, or use objective.rlaif.mode: offline (resumable)",
        )
    run = start_run(recipe, resume, console)
    if not (resume and labelling_done(run)):  # pairs are appended per round: start from none
        shutil.rmtree(run.run_dir / LABELS_DIR, ignore_errors=True)
    data = load_run_data(run, read_prompts, read_eval=None)  # bad rows stop the run before any model loads
    records: list[PromptRecord] = list(data.train.records)  # type: ignore[arg-type]
    held_out = list(read_prompts(recipe.eval.data, recipe).records)[: recipe.eval.limit] if recipe.eval.data else []
    run.train_examples = len(records)
    options = recipe.objective.rlaif

    run.console.print(f"[bold]model[/]: {recipe.model.name}; judge: {options.judge.endpoint or options.judge.model}")
    tokenizer = load_tokenizer(recipe.model.name)
    model = load_base_model(recipe.model.name, recipe.method, dtype=torch.float32)
    model.config.use_cache = False  # padded DPO batches need the full mask; generation turns the cache on itself
    judge = judge or pairwise_judge(options.judge)
    base_answers = _greedy_answers(run, model, tokenizer, held_out) if held_out and recipe.eval.before else None

    t = recipe.training
    pairs_planned = (min(len(records), options.prompts_per_round or len(records))) * options.pairs_per_prompt
    total = options.online_rounds * options.online_steps if options.mode == "online" else planned_optimizer_steps(
        pairs_planned, t.batch_size, t.grad_accum, t.epochs, t.max_steps
    )  # fmt: skip
    model = apply_method(model, recipe.method, total_steps=total)
    report_parameters(run, model)
    if options.mode == "offline":
        return _offline(run, model, tokenizer, records, judge, callbacks, held_out, base_answers)
    return _online(run, model, tokenizer, records, judge, callbacks, held_out, base_answers)


def _dpo_trainer(run: Run, model, tokenizer, records, output_dir, callbacks, *, max_steps: int | None = None):
    """The preference recipe's DPO trainer over preference records (examples built as objective.type dpo builds them)."""
    dpo = dpo_view(run.recipe)
    if max_steps is not None:
        dpo = dpo.model_copy(update={"training": dpo.training.model_copy(update={"max_steps": max_steps})})
    examples, report = build_examples("dpo", records, tokenizer, dpo.data.max_length, dpo.data.overlong, data_format="preference")
    if not examples:
        return None, examples
    args = training_arguments(dpo, output_dir, run.precision, has_val=False)
    all_callbacks = run_callbacks(run.run_dir, run.console, dpo.training, [*method_callbacks(model, dpo.method), *callbacks])
    trainer = make_preference_trainer(
        dpo.objective, model, args, tokenizer, examples, [], all_callbacks, run_dir=run.run_dir, max_length=dpo.data.max_length, console=run.console
    )
    return trainer, examples


LABELLING_DONE = "labelling.json"  # written once offline labelling finished: its stats; --resume then reuses pairs.jsonl


def labelling_done(run: Run) -> bool:
    return (run.run_dir / LABELS_DIR / LABELLING_DONE).is_file()


def _offline(run: Run, model, tokenizer, records, judge, callbacks, held_out, base_answers) -> TrainResult:
    """Label every prompt once, then DPO on pairs.jsonl read back with the preference reader.

    The labels are the run's data: once labelling finished its stats go to RUN/rlaif/labelling.json,
    and a --resume trains on the same pairs.jsonl from the checkpoint without sampling or judging again.
    """
    pairs_file = run.run_dir / LABELS_DIR / "pairs.jsonl"
    done = run.run_dir / LABELS_DIR / LABELLING_DONE
    if run.checkpoint is not None and done.is_file():
        stats = json.loads(done.read_text())
        run.console.print(f"[bold]labelling[/]: reusing {stats['pairs']} labelled pairs of {pairs_file} (--resume)")
    else:
        _, stats = label_round(run, 1, model, tokenizer, records, judge)
        if run.main:
            done.write_text(json.dumps(stats, indent=2))
    if not stats["pairs"]:
        (run.run_dir / SUMMARY_FILE).write_text(json.dumps({"objective": "rlaif", "error": "no labelled pairs", "labelling": stats}, indent=2))
        raise TuneforgeError(
            f"rlaif: the judge labelled none of {stats['sampled_pairs']} sampled pairs ({stats['ties']} ties, "
            f"{stats['identical']} identical, {stats['empty']} empty); nothing to train on",
            hint=f"see {run.run_dir / LABELS_DIR / 'ties.jsonl'}; try a stronger judge (objective.rlaif.judge), a clearer rubric, "
            "a higher objective.rlaif.temperature or more pairs_per_prompt",
        )
    loaded = load_preference_records(pairs_file, "preference")  # the file a user would reuse with objective.type dpo
    trainer, examples = _dpo_trainer(run, model, tokenizer, loaded.records, run.run_dir, callbacks)
    if trainer is None:
        raise TuneforgeError(f"rlaif: every labelled pair of {pairs_file} is over data.max_length", hint="raise data.max_length")
    config = model.get_base_model().config if hasattr(model, "get_base_model") else model.config
    fitted = fit(run, trainer, planned_speed(dpo_view(run.recipe), run.precision, config, examples))
    final_dir = run.run_dir / saved_dir_name(run.recipe.method)
    save_final_model(trainer, final_dir, lambda: save_method(trainer.model, final_dir, run.recipe.method))
    tokenizer.save_pretrained(str(final_dir))
    run.console.print(f"[bold]saved[/] {final_dir}")
    plot_loss(run.run_dir / METRICS_FILE, run.run_dir / "plots" / "loss.png")
    win = _win_rate(run, model, tokenizer, judge, held_out, base_answers)
    summary = write_summary(run, trainer, fitted, None)
    summary.update(objective="rlaif", mode="offline", labelling=stats, pairs_file=str(pairs_file), train_examples=len(examples))
    if win is not None:
        summary["eval"] = win
    (run.run_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=2))
    run.console.print(f"[bold green]done[/] in {summary['wall_seconds']:.0f}s: {stats['pairs']} pairs, {summary['steps']} DPO steps -> {run.run_dir}")
    return TrainResult(run.run_dir, summary, {"win_rate": win} if win else None)


def _round_prompts(records: Sequence[PromptRecord], recipe: Recipe, round_no: int) -> list[PromptRecord]:
    n = recipe.objective.rlaif.prompts_per_round
    if not n or n >= len(records):
        return list(records)
    return random.Random(recipe.training.seed * 1000 + round_no).sample(list(records), n)


def _online(run: Run, model, tokenizer, records, judge, callbacks, held_out, base_answers) -> TrainResult:
    """Rounds of sample -> label -> a few DPO steps on the round's pairs; each round samples the updated policy."""
    options, rounds, trainer = run.recipe.objective.rlaif, [], None
    for round_no in range(1, options.online_rounds + 1):
        started = time.perf_counter()
        labelled, stats = label_round(run, round_no, model, tokenizer, _round_prompts(records, run.recipe, round_no), judge)
        pairs = preference_records(labelled)
        round_trainer = None
        if pairs:
            out = run.run_dir / "rounds" / f"round-{round_no}"
            round_trainer, examples = _dpo_trainer(run, model, tokenizer, pairs, out, callbacks, max_steps=options.online_steps)
        if round_trainer is not None:
            config = model.get_base_model().config if hasattr(model, "get_base_model") else model.config
            fitted = fit(run, round_trainer, planned_speed(dpo_view(run.recipe), run.precision, config, examples))
            stats.update(train_loss=fitted.training_loss, steps=round_trainer.state.global_step, train_examples=len(examples))
            trainer = round_trainer
        else:
            run.console.print(f"[yellow]round {round_no}: no labelled pair, nothing to train on this round[/]")
            stats["steps"] = 0
        stats["round_seconds"] = round(time.perf_counter() - started, 2)
        with (run.run_dir / METRICS_FILE).open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(stats) + "\n")
        rounds.append(stats)
    return _finish_online(run, model, trainer, tokenizer, rounds, judge, held_out, base_answers)


def _win_rate(run: Run, model, tokenizer, judge, held_out, base_answers) -> dict | None:
    """Tuned vs base on the held-out prompts, judged in both orders; writes eval/win_rate.json."""
    if not held_out or base_answers is None:
        return None
    run.console.print(f"[bold]judging tuned vs base[/] on {len(held_out)} held-out prompts")
    tuned = _greedy_answers(run, model, tokenizer, held_out)
    win = judged_win_rate(judge, held_out, tuned, base_answers, run.recipe.objective.rlaif.rubric)
    samples = [{"source": r.source, "prompt": prompt_text(r), "tuned": a, "base": b} for r, a, b in list(zip(held_out, tuned, base_answers))[:5]]
    (run.run_dir / "eval").mkdir(parents=True, exist_ok=True)
    (run.run_dir / "eval" / "win_rate.json").write_text(json.dumps({"data": str(run.recipe.eval.data), **win, "samples": samples}, indent=2))
    run.console.print(
        f"  tuned vs base: win rate {win['win_rate']:.3f} ({win['wins_a']} wins, {win['wins_b']} losses, "
        f"{win['ties']} ties of which {win['inconsistent']} inconsistent and {win['identical']} identical)"
    )
    return win


def _finish_online(run: Run, model, trainer, tokenizer, rounds: list[dict], judge, held_out, base_answers) -> TrainResult:
    """Save the weights (untrained when no round labelled anything), judge tuned vs base, write summary.json."""
    recipe = run.recipe
    final_dir = run.run_dir / saved_dir_name(recipe.method)
    if trainer is not None:
        save_final_model(trainer, final_dir, lambda: save_method(model, final_dir, recipe.method))
    else:
        save_method(model, final_dir, recipe.method)
    tokenizer.save_pretrained(str(final_dir))
    run.console.print(f"[bold]saved[/] {final_dir}")
    plot_loss(run.run_dir / METRICS_FILE, run.run_dir / "plots" / "loss.png")
    win = _win_rate(run, model, tokenizer, judge, held_out, base_answers)
    trainable, total = run.parameters
    summary = {
        "objective": "rlaif",
        "mode": "online",
        "precision": run.precision.name,
        "device": run.precision.device,
        "method": recipe.method.type,
        "trainable_parameters": trainable,
        "total_parameters": total,
        "rounds": rounds,
        "pairs": [r["pairs"] for r in rounds],
        "consistent_share": [r["consistent_share"] for r in rounds],
        "position_bias_rate": [r["position_bias_rate"] for r in rounds],
        "steps": sum(r.get("steps", 0) for r in rounds),
        "pairs_file": str(run.run_dir / LABELS_DIR / "pairs.jsonl"),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "wall_seconds": round(time.perf_counter() - run.started, 2),
        "torch": torch.__version__,
    }
    if win is not None:
        summary["eval"] = win
    (run.run_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=2))
    run.console.print(f"[bold green]done[/] in {summary['wall_seconds']:.0f}s: pairs per round {summary['pairs']} -> {run.run_dir}")
    return TrainResult(run.run_dir, summary, {"win_rate": win} if win else None)
