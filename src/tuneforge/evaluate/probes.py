"""The evaluation probes' entry points, called by the runner for each evaluated model.

``run_model_probes`` runs the enabled single-model probes (red-team safety, the forgetting probe,
rubric judging) on one model through a plain generate function, so the probes need no model object
and tests can pass a Python function. ``run_pairwise`` judges the first two models against each
other; ``probe_flags`` turns before/after regressions into the flags at the top of the report.
Each probe writes its per-item file (label or verdict with its reason) next to results.json.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from tuneforge.config.eval import EvalSection
from tuneforge.data.formats import load_records
from tuneforge.data.records import ChatRecord
from tuneforge.datatools.judge import JudgeBackend
from tuneforge.datatools.refusals import RefusalDetector
from tuneforge.evaluate.forgetting import load_probe, score_forgetting
from tuneforge.evaluate.judging import backend_for, judge_pairwise, score_rubrics, summarise_rubrics
from tuneforge.evaluate.safety import load_redteam, score_safety

GenerateFn = Callable[[list[list[dict[str, str]]], int], list[str]]
"""Chat message lists in (no assistant turn), max_new_tokens, greedy completions out, in order."""


def write_jsonl(path: Path, rows: Iterable[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def _safety(name: str, generate: GenerateFn, options: EvalSection, out_dir: Path, console: Any) -> dict:
    opts = options.safety
    items = load_redteam(opts.path)
    detector = RefusalDetector(opts.refusal_patterns)
    console.print(f"  [{name}] safety: {len(items)} red-team prompts", highlight=False, markup=False)
    outputs = generate([it.as_messages() for it in items], opts.max_new_tokens)
    section, rows = score_safety(items, outputs, detector)
    write_jsonl(out_dir / f"safety-{name}.jsonl", rows)
    return section


def _forgetting(name: str, generate: GenerateFn, options: EvalSection, out_dir: Path, console: Any) -> dict:
    opts = options.forgetting
    items = load_probe(opts.path)
    console.print(f"  [{name}] forgetting probe: {len(items)} items", highlight=False, markup=False)
    outputs = generate([[{"role": "user", "content": it.prompt}] for it in items], opts.max_new_tokens)
    section, rows = score_forgetting(items, outputs)
    write_jsonl(out_dir / f"forgetting-{name}.jsonl", rows)
    return section


def _answers_from_data(generate: GenerateFn, options: EvalSection, limit: int | None) -> tuple[list[str], list[str]]:
    """The eval data's requests and the model's answers to them, for a caller that passed none."""
    records = [r for r in load_records(options.data).records if isinstance(r, ChatRecord)][: limit or None]  # type: ignore[arg-type]
    chats = [list(r.as_dicts()) for r in records]
    chats = [c[:-1] if c and c[-1]["role"] == "assistant" else c for c in chats]
    prompts = [next((m["content"] for m in reversed(c) if m["role"] == "user"), "") for c in chats]
    return prompts, generate(chats, options.max_new_tokens)


def _judge_rubric(
    name: str,
    generate: GenerateFn,
    options: EvalSection,
    out_dir: Path,
    console: Any,
    prompts: Sequence[str] | None,
    outputs: Sequence[str] | None,
    backend: JudgeBackend | None,
) -> dict | None:
    opts = options.judge
    if prompts is None or outputs is None:
        if options.data is None:
            console.print(f"  [{name}] judge: no answers to score (set eval.data); rubric judging skipped", highlight=False, markup=False)
            return None
        prompts, outputs = _answers_from_data(generate, options, opts.limit)
    prompts, outputs = list(prompts)[: opts.limit or None], list(outputs)[: opts.limit or None]
    console.print(f"  [{name}] judge: {len(outputs)} answers x {len(opts.rubrics)} rubrics", highlight=False, markup=False)
    records = score_rubrics(backend or backend_for(opts.client), prompts, outputs, opts.rubrics)
    write_jsonl(out_dir / f"judge-rubric-{name}.jsonl", records)
    return summarise_rubrics(records, list(opts.rubrics))


def run_model_probes(
    name: str,
    generate: GenerateFn,
    options: EvalSection,
    out_dir: Path,
    console: Any,
    *,
    prompts: Sequence[str] | None = None,
    outputs: Sequence[str] | None = None,
    backend: JudgeBackend | None = None,
) -> dict[str, dict]:
    """The enabled single-model probes on model ``name``: {'safety'|'forgetting'|'judge_rubric': its section}.

    The runner stores each section under results[key][name]. The rubric judge scores ``outputs``
    (this model's answers to the eval data's ``prompts``) when given, else generates answers to
    ``eval.data`` itself. ``backend`` replaces the configured judge (tests pass a stub).
    """
    out_dir = Path(out_dir)
    found: dict[str, dict] = {}
    if options.safety.enabled:
        found["safety"] = _safety(name, generate, options, out_dir, console)
    if options.forgetting.enabled:
        found["forgetting"] = _forgetting(name, generate, options, out_dir, console)
    if options.judge.enabled:
        section = _judge_rubric(name, generate, options, out_dir, console, prompts, outputs, backend)
        if section is not None:
            found["judge_rubric"] = section
    return found


def run_pairwise(
    prompts: list[str],
    outputs: dict[str, list[str]],
    options: EvalSection,
    out_dir: Path,
    console: Any,
    *,
    backend: JudgeBackend | None = None,
) -> dict | None:
    """The first two models' answers judged pair by pair in both orders, or None when pairwise is off
    (or fewer than two models were evaluated). Writes judge-pairwise.jsonl."""
    opts = options.judge
    if not opts.pairwise:
        return None
    names = list(outputs)[:2]
    if len(names) < 2:
        console.print("  judge: pairwise needs two evaluated models (base and tuned); skipped", highlight=False)
        return None
    n = min(len(prompts), len(outputs[names[0]]), len(outputs[names[1]]), opts.limit or len(prompts))
    console.print(f"  judge: {names[0]} vs {names[1]} on {n} prompts, both orders", highlight=False)
    section, records = judge_pairwise(
        backend or backend_for(opts.client),
        prompts[:n],
        (names[0], names[1]),
        (outputs[names[0]][:n], outputs[names[1]][:n]),
        opts.pairwise_rubric,
    )
    write_jsonl(Path(out_dir) / "judge-pairwise.jsonl", records)
    return section


def _baseline(section: dict) -> str | None:
    """The model others are compared with: 'base' when evaluated, else the first one."""
    if "base" in section:
        return "base"
    return next(iter(section), None)


def _change(before: dict, after: dict, key: str) -> float | None:
    """after - before, rounded so a change exactly at a threshold is not flagged by float noise."""
    if key not in before or key not in after:
        return None
    return round(after[key] - before[key], 9)


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


# (section, key, direction of harm, threshold option, level, what the number is)
_CHECKS = (
    ("safety", "refusal_rate_harmful", -1, ("safety", "max_refusal_drop"), "error", "refusals of harmful prompts"),
    ("safety", "over_refusal_harmless", +1, ("safety", "max_over_refusal_rise"), "warning", "refusals of harmless look-alike prompts"),
    ("safety", "injection_success", +1, ("safety", "max_injection_rise"), "warning", "prompt-injection success"),
    ("forgetting", "score", -1, ("forgetting", "max_drop"), "warning", "general-capability probe score (forgetting)"),
)


def probe_flags(results: dict, options: EvalSection) -> list[dict]:
    """Flags for the top of the report: a model whose safety or probe score moved the harmful way
    by more than the allowed amount, compared with the base model."""
    flags: list[dict] = []
    for key_section, key, harm, (opt_section, opt_name), level, what in _CHECKS:
        section = results.get(key_section) or {}
        base = _baseline(section)
        if base is None:
            continue
        limit = getattr(getattr(options, opt_section), opt_name)
        for name, scores in section.items():
            change = None if name == base else _change(section[base], scores, key)
            if change is None or harm * change <= limit:
                continue
            verb = "fell" if change < 0 else "rose"
            flags.append({
                "level": level,
                "text": f"{name}: {what} {verb} from {_pct(section[base][key])} ({base}) to {_pct(scores[key])}, "
                f"{_pct(abs(change))} points; eval.{opt_section}.{opt_name} allows {_pct(limit)}",
            })
    return flags
