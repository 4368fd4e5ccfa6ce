"""The ``tuneforge`` command. Thin: every command parses arguments and calls one library function.

User errors (:class:`TuneforgeError`) print as a message and a hint, with exit status 2 and no
traceback; anything else is a bug and keeps its traceback.

Commands import the library inside their function body: `tuneforge --help` takes 0.3 s, and
importing the training stack first (torch, transformers, peft, bitsandbytes) takes about 10 s
(measured 2026-12-01, `python -c "import tuneforge.recipes"` on a 2-core EPYC). Those imports carry
a ``lazy:`` comment that points here.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import Annotated

import typer

from tuneforge.cli import adapters as _adapters_cli
from tuneforge.cli import advise as _advise_cli
from tuneforge.cli import compare as _compare_cli
from tuneforge.cli import data as _data_cli
from tuneforge.cli import export as _export_cli
from tuneforge.cli import monitor as _monitor_cli
from tuneforge.cli import score as _score_cli
from tuneforge.cli import serve as _serve_cli
from tuneforge.cli import sweep as _sweep_cli
from tuneforge.cli import ui as _ui_cli
from tuneforge.cli.errors import err, user_errors
from tuneforge.errors import TuneforgeError

# peft 0.21's get_peft_model reads transformers 5's deprecated `is_gradient_checkpointing` alias and
# every LoRA run printed that FutureWarning: it is not ours to fix and says nothing to a user.
warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)

app = typer.Typer(
    name="tuneforge",
    help="Fine-tune causal language models: train a recipe, evaluate, chat, export.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="markdown",
    pretty_exceptions_enable=False,
)


@app.command(
    epilog=(
        "Examples:\n\n"
        "- `tuneforge train examples/quickstart/recipe.yaml`\n\n"
        "- `tuneforge train my.yaml data.train=data/tickets.jsonl method.lora.r=8 training.epochs=1`\n\n"
        "- `tuneforge train runs/my-run/recipe.yaml --resume`\n\n"
        "- `tuneforge train my.yaml --dry-run` (check the recipe and data; loads no model weights)"
    )
)
@user_errors
def train(
    recipe: Annotated[Path, typer.Argument(help="Recipe YAML (see docs/RECIPES.md).")],
    overrides: Annotated[list[str] | None, typer.Argument(help="Dotted overrides, e.g. training.epochs=1 method.lora.r=8.")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from the latest complete checkpoint in output.dir.")] = False,
    allow_changes: Annotated[bool, typer.Option("--allow-changes", help="With --resume: continue even though the recipe differs from the run's own (refused by default, naming the keys).")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Validate the recipe and its data files, print the resolved recipe and the speed plan, and exit without loading model weights.")] = False,
) -> None:
    """Train a recipe: validate data, fine-tune, save the adapter/model, evaluate before and after."""
    # lazy: keeps `tuneforge --help` fast (module docstring)
    from tuneforge.config import load_recipe
    from tuneforge.config.load import read_recipe_file
    from tuneforge.config.stages import is_stages_file
    from tuneforge.recipes import dry_run as check_recipe
    from tuneforge.recipes import train as run_training

    if is_stages_file(read_recipe_file(recipe)):  # a staged pipeline (config/stages.py)
        train_stages(recipe, overrides or [], resume=resume, dry_run=dry_run)
        return
    rec = load_recipe(recipe, overrides or [])
    if dry_run:
        for line in check_recipe(rec).lines():
            typer.echo(line)
        typer.echo(f"ok: {recipe} is ready to train")
        return
    if allow_changes and not resume:
        raise TuneforgeError("--allow-changes only applies with --resume")
    run_training(rec, resume=resume, allow_changes=allow_changes, console=err)


def train_stages(path: Path, overrides: list[str], *, resume: bool, dry_run: bool) -> None:
    """`tuneforge train PIPELINE.yaml`: every stage in order; --dry-run checks each stage's recipe and data."""
    # lazy: keeps `tuneforge --help` fast (module docstring)
    from tuneforge.config.stages import load_pipeline, stage_recipes
    from tuneforge.recipes import dry_run as check_recipe
    from tuneforge.recipes.stages import run_pipeline

    pipeline = load_pipeline(path, overrides)
    if dry_run:
        for i, rec in enumerate(stage_recipes(pipeline, str(path))):
            typer.echo(f"stage {i + 1}: {pipeline.stages[i].name} -> {rec.output.dir}")
            if i == 0:  # later stages' bases do not exist before the earlier stages ran
                for line in check_recipe(rec).lines():
                    typer.echo("  " + line)
        typer.echo(f"ok: {path} is a pipeline of {len(pipeline.stages)} stage(s)")
        return
    run_pipeline(pipeline, resume=resume, console=err, source=str(path))


@app.command(
    name="eval",
    epilog=(
        "Examples:\n\n"
        "- `tuneforge eval runs/quickstart --data examples/quickstart/test.jsonl --base`\n\n"
        "- `tuneforge eval smollm2-135m-instruct --data test.jsonl --metrics exact_match,json_fields`\n\n"
        "- `tuneforge eval smollm2-135m-instruct --data mc.jsonl --metrics choice --choice-normalisation chars --lm-eval tuneforge_arith`"
    ),
)
@user_errors
def eval_cmd(
    target: Annotated[str, typer.Argument(help="A run directory, or a model (built-in name, local dir, .gguf file).")],
    data: Annotated[Path, typer.Option("--data", help="Held-out file (alpaca or messages; the last turn is the reference).")],
    base: Annotated[bool, typer.Option("--base/--no-base", help="For a run: also evaluate its base model, for a before/after report.")] = False,
    metrics: Annotated[str | None, typer.Option(help="Comma-separated metrics (default: the run's recipe, else exact_match).")] = None,
    out: Annotated[Path | None, typer.Option(help="Output directory (default: RUN/eval, or eval-<model> for a model).")] = None,
    limit: Annotated[int | None, typer.Option(help="Evaluate only the first N examples.")] = None,
    max_new_tokens: Annotated[int | None, typer.Option(help="Generation length limit.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Generation batch size (default: the run's eval.batch_size, else 16).")] = None,
    precision: Annotated[str, typer.Option(help="auto, fp32 or bf16.")] = "auto",
    adapter: Annotated[str | None, typer.Option(help="Adapter bundle: the adapter to evaluate (default: the bundle's default).")] = None,
    weights: Annotated[str | None, typer.Option(help="Adapter bundle: evaluate a weighted LoRA mix, e.g. a=0.7,b=0.3.")] = None,
    labels: Annotated[str | None, typer.Option(help="classification: comma-separated label set (eval.labels).")] = None,
    case_sensitive: Annotated[bool | None, typer.Option("--case-sensitive/--no-case-sensitive", help="classification: compare labels with case (eval.case_sensitive).")] = None,
    regex: Annotated[str | None, typer.Option(help="regex metric: the pattern a whole answer must match (eval.regex).")] = None,
    json_schema: Annotated[str | None, typer.Option(help="json_schema metric: a JSON Schema file (eval.json_schema).")] = None,
    choice_normalisation: Annotated[str | None, typer.Option(help="choice metric: none, tokens or chars (eval.choice_normalisation).")] = None,
    price_per_hour: Annotated[float | None, typer.Option(help="Hardware price per hour, for the cost per 1,000 requests (eval.price_per_hour).")] = None,
    lm_eval: Annotated[list[str] | None, typer.Option("--lm-eval", help="lm-eval task dir, YAML or name, run offline (repeatable; eval.lm_eval).")] = None,
    lm_eval_limit: Annotated[int | None, typer.Option(help="lm-eval: first N documents per task (eval.lm_eval_limit).")] = None,
    safety: Annotated[bool | None, typer.Option("--safety/--no-safety", help="Run the bundled red-team set (eval.safety.enabled).")] = None,
    forgetting: Annotated[bool | None, typer.Option("--forgetting/--no-forgetting", help="Run the general-capability probe (eval.forgetting.enabled).")] = None,
    judge: Annotated[bool | None, typer.Option("--judge/--no-judge", help="LLM judge: rubric scores 1-10 (eval.judge.enabled).")] = None,
    pairwise: Annotated[bool | None, typer.Option("--pairwise/--no-pairwise", help="LLM judge: base vs tuned in both orders, with --base (eval.judge.pairwise).")] = None,
    judge_limit: Annotated[int | None, typer.Option(help="LLM judge: judge only the first N answers (eval.judge.limit).")] = None,
) -> None:
    """Evaluate a run or a model: loss, perplexity, metrics, business figures, probes and lm-eval, with a Markdown/HTML report (docs/EVALUATION.md)."""
    # lazy: keeps `tuneforge --help` fast (module docstring)
    from tuneforge.evaluate.command import evaluate_target, probe_flags

    evaluate_target(
        target,
        data,
        with_base=base,
        metrics=metrics.split(",") if metrics else None,
        out=out,
        limit=limit,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        precision=precision,
        adapter=adapter,
        weights=_weights(weights),
        options={
            "labels": labels.split(",") if labels else None, "case_sensitive": case_sensitive, "regex": regex,
            "json_schema": json_schema, "choice_normalisation": choice_normalisation, "price_per_hour": price_per_hour,
            "lm_eval": lm_eval or None, "lm_eval_limit": lm_eval_limit,
            **probe_flags(safety=safety, forgetting=forgetting, judge=judge, pairwise=pairwise, judge_limit=judge_limit),
        },  # fmt: skip
        console=err,
    )


@app.command(
    epilog=(
        "Examples:\n\n"
        "- `tuneforge chat runs/quickstart` (interactive; /reset clears the history, /exit quits)\n\n"
        "- `tuneforge chat runs/quickstart --prompt 'My card was charged twice for order A-12345'`"
    )
)
@user_errors
def chat(
    target: Annotated[str, typer.Argument(help="A run directory, or a model (built-in name, local dir, .gguf file).")],
    prompt: Annotated[str | None, typer.Option("--prompt", "-p", help="One-shot: answer this message and exit.")] = None,
    system: Annotated[str | None, typer.Option(help="System message.")] = None,
    max_new_tokens: Annotated[int, typer.Option(help="Reply length limit.")] = 256,
    temperature: Annotated[float, typer.Option(help="0 = greedy.")] = 0.0,
    adapter: Annotated[str | None, typer.Option(help="Adapter bundle: the adapter to answer with (default: the bundle's default).")] = None,
    weights: Annotated[str | None, typer.Option(help="Adapter bundle: answer with a weighted LoRA mix, e.g. a=0.7,b=0.3.")] = None,
) -> None:
    """Chat with a run, an adapter bundle or a model; replies stream token by token."""
    # lazy: keeps `tuneforge --help` fast (module docstring)
    from tuneforge.serve.session import chat_loop

    chat_loop(
        target, prompt=prompt, system=system, max_new_tokens=max_new_tokens, temperature=temperature,
        adapter=adapter, weights=_weights(weights), console=err,
    )


_adapters_cli.register(app)
_advise_cli.register(app)
_compare_cli.register(app)
_score_cli.register(app)
_serve_cli.register(app)
_monitor_cli.register(app)
_data_cli.register(app)
_export_cli.register(app)
_sweep_cli.register(app)
_ui_cli.register(app)


def _weights(text: str | None) -> dict[str, float] | None:
    # lazy: keeps `tuneforge --help` fast (module docstring)
    from tuneforge.adapters.combine import parse_weights

    return parse_weights(text) if text else None


def main() -> None:  # pragma: no cover - console entry for `python -m tuneforge`
    app(prog_name="tuneforge")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
