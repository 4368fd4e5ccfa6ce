"""``tuneforge data ...``: inspect, validate, clean, augment, mix, split, convert, chunk.

Thin: each command builds the same step models a recipe's ``data.pipeline`` uses and calls the
library. Every command that changes data writes OUT plus OUT-report/ (report.md, report.html,
PNG plots, trace.jsonl of every removed/changed/added row with its reason).

The step models and most of the toolkit are imported inside the commands, each with a ``lazy:``
comment: this module is imported by ``tuneforge --help`` and by every other command, and with the
toolkit at its top ``tuneforge --help`` takes 1.24 s instead of 0.27 s (min of 5 runs, measured
2026-12-01 on the 2-core dev machine; `python -X importtime`, on top of ``tuneforge.cli.main``:
``tuneforge.config.pipeline`` (pydantic) 0.18 s, ``tuneforge.datatools.pipeline`` (pydantic, numpy,
matplotlib) 0.71 s). The toolkit modules that cost nothing (validate, split: 0.01 s) are imported
at the top.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from tuneforge.cli.errors import print_user_error, user_errors
from tuneforge.datatools.split import split_file
from tuneforge.datatools.validate import validate_file
from tuneforge.errors import TuneforgeError

if TYPE_CHECKING:
    from tuneforge.config.pipeline import ReplayOptions, TemplatesStep

app = typer.Typer(
    help="Data toolkit: inspect, validate, clean, augment, mix, split, convert, chunk.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)
console = Console(stderr=True)
out = Console()


def register(parent: typer.Typer) -> None:
    """Attach ``tuneforge data ...`` to the main app."""
    parent.add_typer(app, name="data")


# Options shared by several commands.
Fmt = Annotated[str, typer.Option("--format", "-f", help="auto, alpaca, messages, prompt_completion or text.")]
ReportDir = Annotated[
    Path | None, typer.Option("--report", help="Report directory (default: OUT-report next to OUT).")
]
SkipBad = Annotated[
    bool, typer.Option("--skip-bad", help="Skip bad input rows (traced) instead of stopping at the first.")
]
InputFile = Annotated[Path, typer.Argument(help="Input data file.")]
Seed = Annotated[int, typer.Option(help="Seed.")]

# `tuneforge data clean` options, in the order of the steps they configure.
CleanOutput = Annotated[Path, typer.Option("--output", "-o", help="Cleaned JSONL file.")]
CleanRecipe = Annotated[Path | None, typer.Option(help="Use this recipe's data.pipeline instead of the flags.")]
NormalizeOn = Annotated[
    bool, typer.Option("--normalize/--no-normalize", help="NFKC, whitespace, control characters.")
]
Lowercase = Annotated[bool, typer.Option(help="Normalisation also lower-cases.")]
Punctuation = Annotated[bool, typer.Option(help="Normalisation also straightens quotes/dashes.")]
DedupOn = Annotated[bool, typer.Option("--dedup/--no-dedup", help="Exact dedup of normalised text.")]
NearDedup = Annotated[bool, typer.Option("--near-dedup", help="MinHash LSH near-dedup.")]
Threshold = Annotated[float, typer.Option(help="Near-dedup Jaccard threshold.")]
ShingleSize = Annotated[int, typer.Option(help="Near-dedup shingle size (words).")]
SafetyOn = Annotated[bool, typer.Option("--safety/--no-safety", help="Block/allow-list filter.")]
Blocklist = Annotated[str | None, typer.Option(help="Extra block-list file.")]
Allowlist = Annotated[str | None, typer.Option(help="Extra allow-list file.")]
PiiOn = Annotated[bool, typer.Option("--pii", help="Scrub e-mails, phone and card numbers.")]
RefusalsOn = Annotated[
    bool, typer.Option("--refusals", help="Drop refusals to benign requests, keep those to harmful ones.")
]
FlagRefusals = Annotated[
    bool, typer.Option("--flag-refusals", help="With --refusals: keep benign refusals, only flag them.")
]
BalanceField = Annotated[
    str | None, typer.Option(help="Balance categories of this field (uniform unless --targets).")
]
Targets = Annotated[str | None, typer.Option(help="Balance targets, e.g. 'a=0.5,b=0.3,c=0.2'.")]
Upsample = Annotated[
    bool,
    typer.Option("--upsample", help="Balance by repeating small categories instead of cutting big ones."),
]
JudgeRubric = Annotated[str | None, typer.Option(help="LLM judge rubric: quality, hallucination or safety.")]
JudgeModel = Annotated[str, typer.Option(help="Local judge model.")]
JudgeEndpoint = Annotated[str | None, typer.Option(help="OpenAI-compatible base URL for the judge.")]
MinScore = Annotated[int, typer.Option(help="Judge score (1-5) a row needs to stay.")]
SamplingSeed = Annotated[int, typer.Option(help="Seed for sampling steps.")]

CLEAN = "tuneforge data clean"


def _progress() -> Progress:
    """A transient spinner with the running count of rows read (on stderr)."""
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TextColumn("{task.completed:,} rows read"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )


def _run(
    input_path: Path,
    output: Path,
    steps: list,
    fmt: str,
    report: Path | None,
    skip_bad: bool,
    title: str,
    **kw,
) -> None:
    """Run the pipeline with a progress spinner, then print what it wrote and where the report is."""
    # lazy: tuneforge.datatools.pipeline costs 0.71 s of `tuneforge --help` (module docstring), measured
    from tuneforge.datatools.pipeline import run_pipeline

    with _progress() as prog:
        task = prog.add_task(title, total=None)
        result = run_pipeline(
            input_path,
            output,
            steps,
            fmt=fmt,
            report_dir=report,
            on_bad_rows="skip" if skip_bad else "error",
            title=title,
            progress=lambda n: prog.update(task, completed=n) if n % 1000 == 0 else None,
            **kw,
        )
    console.print(f"[bold green]wrote[/] {result.output}: {result.summary()}")
    console.print(f"[bold]report[/]: {result.report['html']}  [bold]trace[/]: {result.trace}")


@app.command(
    epilog="Example: `tuneforge data inspect train.jsonl --tokenizer smollm2-135m-instruct --max-length 512 --category category`"
)
@user_errors
def inspect(
    file: Annotated[Path, typer.Argument(help="Data file (.jsonl, .json, .csv, .parquet).")],
    fmt: Fmt = "auto",
    tokenizer: Annotated[
        str | None,
        typer.Option(
            help="Model whose tokenizer counts tokens (default: the built-in model); 'none' counts words."
        ),
    ] = "smollm2-135m-instruct",
    max_length: Annotated[int | None, typer.Option(help="Report examples longer than this many tokens.")] = None,
    category: Annotated[str | None, typer.Option(help="Field holding a category, for the balance table.")] = None,
    lang_sample: Annotated[int, typer.Option(help="Rows used for language identification.")] = 500,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """Counts, token-length histogram, duplicates, field completeness, category balance, languages, over-length rows."""
    # lazy: datatools.inspect (numpy) costs 0.27 s of `tuneforge --help`, measured
    from tuneforge.datatools.inspect import inspect_file

    tok = _counting_tokenizer(tokenizer)
    stats = inspect_file(file, fmt, tok, max_length, category, lang_sample)
    if as_json:
        out.print_json(json.dumps(stats))
    else:
        out.print(_stats_table(file, stats, category, max_length))


def _counting_tokenizer(spec: str | None):
    """The tokenizer that counts tokens, or None ('none': count words, and load no transformers)."""
    if not spec or spec.lower() == "none":
        return None
    # lazy: models.load (torch, transformers) costs 4.4 s of `tuneforge --help`, measured
    from tuneforge.models.load import load_tokenizer

    return load_tokenizer(spec)


def _stats_table(file: Path, stats: dict, category: str | None, max_length: int | None) -> Table:
    """The human-readable form of :func:`~tuneforge.datatools.inspect.inspect_file`'s statistics."""
    t = Table(title=f"{file} ({stats['format']})", show_header=False)
    for key in ("rows", "bad_rows", "exact_duplicates"):
        t.add_row(key, str(stats[key]))
    t.add_row("warnings", str(stats["warnings"]["count"]))
    t.add_row(f"length ({stats['length_unit']})", ", ".join(f"{k} {v}" for k, v in stats["length"].items()))
    t.add_row("histogram", ", ".join(f"{k}: {v}" for k, v in stats["length_histogram"].items()))
    t.add_row(
        "field completeness",
        ", ".join(f"{k} {100 * v:.0f}%" for k, v in stats["field_completeness"].items()),
    )
    t.add_row(
        f"languages (first {stats['languages_sampled']})",
        ", ".join(f"{k} {v}" for k, v in stats["languages"].items()),
    )
    if "categories" in stats:
        t.add_row(f"{category}", ", ".join(f"{k} {v}" for k, v in stats["categories"].items()))
    if "overlong" in stats:
        t.add_row(f"over {max_length} tokens", str(stats["overlong"]["count"]))
    return t


@app.command(epilog="Example: `tuneforge data validate train.jsonl --format alpaca --json`")
def validate(
    file: Annotated[Path, typer.Argument(help="Data file.")],
    fmt: Annotated[
        str, typer.Option("--format", "-f", help="auto, alpaca, messages, prompt_completion, text, preference, kto or prompt.")
    ] = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for machines.")] = False,
) -> None:
    """List every bad row with file:line, field and reason; exit status 1 when there is any (2 for an unreadable file)."""
    try:
        result = validate_file(file, fmt)
    except TuneforgeError as exc:
        # Not @user_errors: with --json the error is JSON on stdout too, for the machine reading it.
        if as_json:
            out.print_json(json.dumps({"file": str(file), "error": exc.message, "hint": exc.hint}))
        else:
            print_user_error(exc)
        raise typer.Exit(2) from None
    if as_json:
        out.print_json(json.dumps(result.as_json()))
    else:
        for b in result.bad:
            out.print(b.describe(), highlight=False, soft_wrap=True)
        for w in result.warnings:
            out.print(f"warning: {w.describe()}", highlight=False, soft_wrap=True)
        colour = "red" if result.bad else "green"
        warned = f", {len(result.warnings)} warning(s)" if result.warnings else ""
        console.print(
            f"[bold {colour}]{result.good} good, {len(result.bad)} bad[/]{warned} of {result.rows} rows ({result.format})"
        )
    if result.bad:
        raise typer.Exit(1)


@app.command(
    epilog=(
        "Examples:\n\n- `tuneforge data clean raw.jsonl -o clean.jsonl --near-dedup --pii --refusals`\n\n"
        "- `tuneforge data clean raw.jsonl -o clean.jsonl --balance category`\n\n"
        "- `tuneforge data clean raw.jsonl -o clean.jsonl --recipe recipe.yaml` (the recipe's data.pipeline)"
    )
)
@user_errors
def clean(
    file: InputFile,
    output: CleanOutput,
    fmt: Fmt = "auto",
    recipe: CleanRecipe = None,
    normalize: NormalizeOn = True,
    lowercase: Lowercase = False,
    punctuation: Punctuation = False,
    dedup: DedupOn = True,
    near_dedup: NearDedup = False,
    threshold: Threshold = 0.8,
    shingle_size: ShingleSize = 3,
    safety: SafetyOn = True,
    blocklist: Blocklist = None,
    allowlist: Allowlist = None,
    pii: PiiOn = False,
    refusals: RefusalsOn = False,
    flag_refusals: FlagRefusals = False,
    balance: BalanceField = None,
    targets: Targets = None,
    upsample: Upsample = False,
    judge: JudgeRubric = None,
    judge_model: JudgeModel = "smollm2-135m-instruct",
    judge_endpoint: JudgeEndpoint = None,
    min_score: MinScore = 3,
    seed: SamplingSeed = 0,
    report: ReportDir = None,
    skip_bad: SkipBad = False,
) -> None:
    """Clean a data set: normalise, dedup, safety/PII, refusals, balance, judge; with a report and a trace."""
    if recipe is not None:
        steps, replay = _recipe_pipeline(recipe)
        _run(file, output, steps, fmt, report, skip_bad, CLEAN, replay=replay)
        return
    # lazy: tuneforge.config.pipeline (pydantic) costs 0.18 s of `tuneforge --help` (module docstring), measured
    from tuneforge.config import pipeline as P

    steps: list = []
    if normalize:
        steps.append(P.NormalizeStep(lowercase=lowercase, punctuation=punctuation))
    if dedup or near_dedup:
        steps.append(P.DedupStep(exact=dedup, near=near_dedup, threshold=threshold, shingle_size=shingle_size))
    if safety:
        steps.append(P.SafetyStep(blocklist=blocklist, allowlist=allowlist))
    if pii:
        steps.append(P.PiiStep())
    if refusals or flag_refusals:
        steps.append(P.RefusalsStep(benign="flag" if flag_refusals else "drop"))
    if judge:
        steps.append(P.JudgeStep(rubric=judge, model=judge_model, endpoint=judge_endpoint, min_score=min_score))
    if balance:
        mode = "up" if upsample else "down"
        shares = _parse_targets(targets) if targets else "uniform"
        steps.append(P.BalanceStep(field=balance, targets=shares, mode=mode, seed=seed))
    _run(file, output, steps, fmt, report, skip_bad, CLEAN)


def _recipe_pipeline(recipe: Path) -> tuple[list, ReplayOptions | None]:
    """The recipe's ``data.pipeline`` steps and its ``data.replay``; an empty pipeline is an error."""
    # lazy: tuneforge.config (pydantic) costs 0.14 s of `tuneforge --help` (module docstring), measured
    from tuneforge.config import load_recipe

    rec = load_recipe(recipe, [])
    if not rec.data.pipeline:
        raise TuneforgeError(
            f"{recipe}: data.pipeline is empty", hint="add steps under data.pipeline, or use the flags"
        )
    return list(rec.data.pipeline), rec.data.replay


def _parse_targets(spec: str) -> dict[str, float]:
    """``--targets 'a=0.5,b=0.3'`` -> ``{"a": 0.5, "b": 0.3}``."""
    shares = {}
    for part in spec.split(","):
        name, sep, value = part.partition("=")
        try:
            shares[name.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep or not name.strip():
            raise TuneforgeError(
                f"--targets {spec!r}: expected name=proportion pairs",
                hint="e.g. --targets billing=0.5,tech=0.5",
            )
    return shares


@app.command(
    epilog=(
        "Examples:\n\n- `tuneforge data augment train.jsonl -o aug.jsonl --synonyms 2`\n\n"
        "- `tuneforge data augment train.jsonl -o aug.jsonl --paraphrases 1 --back-translations 1`\n\n"
        "- `tuneforge data augment train.jsonl -o aug.jsonl --templates tpl.jsonl --slots slots.json`"
    )
)
@user_errors
def augment(
    file: InputFile,
    output: Annotated[Path, typer.Option("--output", "-o", help="Originals plus variants (JSONL).")],
    fmt: Fmt = "auto",
    synonyms: Annotated[int, typer.Option(help="Synonym-replacement variants per example.")] = 0,
    lexicon: Annotated[str | None, typer.Option(help="Extra synonym TSV (word<TAB>syn1,syn2).")] = None,
    paraphrases: Annotated[int, typer.Option(help="Model paraphrases per example.")] = 0,
    back_translations: Annotated[int, typer.Option(help="Back-translations per example.")] = 0,
    pivot: Annotated[str, typer.Option(help="Pivot language for back-translation.")] = "French",
    model: Annotated[str, typer.Option(help="Model for paraphrase/back-translation.")] = "smollm2-135m-instruct",
    max_variants: Annotated[int, typer.Option(help="Cap on variants per example.")] = 3,
    templates: Annotated[
        Path | None, typer.Option(help="Template rows with {slot} placeholders (appended to the output).")
    ] = None,
    slots: Annotated[Path | None, typer.Option(help="JSON object of slot -> list of values.")] = None,
    template_limit: Annotated[int | None, typer.Option(help="Cap on rows generated per template.")] = None,
    seed: Seed = 0,
    report: ReportDir = None,
    skip_bad: SkipBad = False,
) -> None:
    """Add variants: synonyms (bundled lexicon), paraphrase / back-translation (a model), template filling."""
    # lazy: datatools.augment (pydantic, numpy) costs 0.25 s of `tuneforge --help`, measured
    from tuneforge.config.pipeline import AugmentStep
    from tuneforge.datatools.augment import Augment

    if (templates is None) != (slots is None):
        raise TuneforgeError("--templates and --slots go together", hint="give both, or neither")
    cfg = AugmentStep(
        synonyms=synonyms,
        paraphrases=paraphrases,
        back_translations=back_translations,
        pivot_language=pivot,
        model=model,
        max_variants=max_variants,
        seed=seed,
    )
    steps: list = [Augment(cfg, lexicon=lexicon)]  # a step object: the lexicon is a CLI-only option
    if templates is not None and slots is not None:
        steps.append(_templates_step(templates, slots, template_limit, seed))
    _run(file, output, steps, fmt, report, skip_bad, "tuneforge data augment")


def _templates_step(templates: Path, slots: Path, limit: int | None, seed: int) -> TemplatesStep:
    """The ``templates`` step a recipe would write, from ``--templates/--slots/--template-limit``."""
    # lazy: tuneforge.config.pipeline (pydantic) costs 0.18 s of `tuneforge --help` (module docstring), measured
    from pydantic import ValidationError

    from tuneforge.config.pipeline import TemplatesStep

    try:
        return TemplatesStep(templates=str(templates), slots=str(slots), limit=limit, seed=seed)
    except ValidationError as exc:
        raise TuneforgeError(f"--template-limit: {exc.errors()[0]['msg']}") from None


@app.command(epilog="Example: `tuneforge data mix task.jsonl:0.7 general.jsonl:0.3 -o mixed.jsonl`")
@user_errors
def mix(
    sources: Annotated[list[str], typer.Argument(help="PATH:WEIGHT pairs.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Mixed JSONL file.")],
    total: Annotated[
        int | None, typer.Option(help="Rows in the mix (default: the largest mix with no repeated row).")
    ] = None,
    seed: Seed = 0,
) -> None:
    """Mix data sets at given proportions (e.g. general instruction data as a replay buffer against forgetting)."""
    # lazy: datatools.mix (pydantic, matplotlib) costs 0.55 s of `tuneforge --help`, measured
    from tuneforge.datatools.mix import parse_spec, write_mix

    result = write_mix([parse_spec(s) for s in sources], output, total, seed)
    console.print(
        f"[bold green]wrote[/] {output}: {result['rows']} rows "
        + ", ".join(f"{k}: {v}" for k, v in result["per_source"].items())
    )
    console.print(f"[bold]report[/]: {result['report']}  [bold]trace[/]: {result['trace']}")


@app.command(epilog="Example: `tuneforge data split train.jsonl --val 0.1 --stratify category -o splits/`")
@user_errors
def split(
    file: Annotated[Path, typer.Argument(help="Data file.")],
    val: Annotated[float, typer.Option(help="Fraction held out for validation.")] = 0.1,
    stratify: Annotated[str | None, typer.Option(help="Keep this field's proportions in both parts.")] = None,
    out_dir: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Directory for train.jsonl and val.jsonl (default: next to FILE)."),
    ] = None,
    seed: Seed = 0,
    fmt: Fmt = "auto",
) -> None:
    """Split into train.jsonl and val.jsonl, seeded, optionally stratified."""
    result = split_file(file, out_dir or file.parent / f"{file.stem}-split", val, stratify, seed, fmt)
    console.print(
        f"[bold green]wrote[/] {result['train_file']} ({result['train']} rows), {result['val_file']} ({result['val']} rows)"
    )


@app.command(epilog="Example: `tuneforge data convert train.jsonl --to messages -o train.messages.jsonl`")
@user_errors
def convert(
    file: Annotated[Path, typer.Argument(help="Data file.")],
    to: Annotated[str, typer.Option(help="messages, sharegpt, alpaca, prompt_completion or text.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Converted JSONL file.")],
    fmt: Fmt = "auto",
    report: ReportDir = None,
    skip_bad: SkipBad = False,
) -> None:
    """Convert between alpaca, messages, ShareGPT, prompt_completion and text (extra fields kept)."""
    # lazy: tuneforge.config.pipeline (pydantic) costs 0.18 s of `tuneforge --help` (module docstring), measured
    from pydantic import ValidationError

    from tuneforge.config.pipeline import ConvertStep

    try:
        step = ConvertStep(to=to)
    except ValidationError:
        raise TuneforgeError(f"--to {to!r} is not a format", hint="use messages, sharegpt, alpaca, prompt_completion or text") from None
    _run(file, output, [step], fmt, report, skip_bad, "tuneforge data convert")


@app.command(epilog="Example: `tuneforge data chunk book.jsonl --max-tokens 512 --overlap 64 -o chunks.jsonl`")
@user_errors
def chunk(
    file: Annotated[Path, typer.Argument(help="Data file (text rows; chat rows are joined).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Chunked JSONL (text format).")],
    max_tokens: Annotated[int, typer.Option(help="Tokens per chunk.")] = 512,
    overlap: Annotated[int, typer.Option(help="Tokens shared by consecutive chunks.")] = 0,
    tokenizer: Annotated[str, typer.Option(help="Model whose tokenizer counts tokens.")] = "smollm2-135m-instruct",
    fmt: Fmt = "auto",
    report: ReportDir = None,
    skip_bad: SkipBad = False,
) -> None:
    """Cut long documents into overlapping token windows for continued pretraining / CFT."""
    # lazy: tuneforge.config.pipeline (pydantic) costs 0.18 s of `tuneforge --help` (module docstring), measured
    from pydantic import ValidationError

    from tuneforge.config.pipeline import ChunkStep

    try:
        step = ChunkStep(max_tokens=max_tokens, overlap=overlap, tokenizer=tokenizer)
    except ValidationError as exc:
        raise TuneforgeError(exc.errors()[0]["msg"]) from None
    _run(file, output, [step], fmt, report, skip_bad, "tuneforge data chunk")
