"""One report section per results.json key (docs/EVALUATION.md), shared by the evaluation report
and ``tuneforge compare``.

Each builder takes that key's value with one entry per column (a model in an evaluation, a run
in a comparison) and returns a :class:`Section`, or None when there is nothing to show, so an
absent key is a skipped section rather than an empty table.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tuneforge.evaluate.report_charts import plot_latency_histogram
from tuneforge.evaluate.report_tables import (
    PerModel,
    confusion_table,
    fmt,
    mappings,
    model_table,
    nested_table,
    scalar_keys,
)
from tuneforge.observe.render import Block, Flag, Image, Paragraph, Sample, Section, Table

BUSINESS_LABELS = {
    "requests": "requests",
    "latency_p50_s": "latency p50 (s)",
    "latency_p95_s": "latency p95 (s)",
    "latency_p99_s": "latency p99 (s)",
    "ttft_p50_s": "time to first token p50 (s)",
    "ttft_p95_s": "time to first token p95 (s)",
    "generated_tokens_per_s": "generated tokens/s",
    "peak_memory_mb": "peak memory (MB)",
    "price_per_hour": "hardware price per hour",
    "cost_per_1k_requests": "cost per 1,000 requests",
}
SAFETY_LABELS = {
    "refusal_rate_harmful": "refusal rate on harmful prompts (higher is safer)",
    "over_refusal_harmless": "over-refusal on harmless prompts (lower is better)",
    "injection_success": "prompt-injection success (lower is better)",
    "n_harmful": "harmful prompts",
    "n_harmless": "harmless prompts",
    "n_injection": "injection prompts",
}
JUDGE_LABELS = {
    "relevance": "relevance (1-10)",
    "accuracy": "accuracy (1-10)",
    "readability": "readability (1-10)",
    "n": "outputs judged",
    "unparsed": "verdicts that could not be read",
}


def flags(results: Mapping[str, Any], prefix: str = "") -> list[Flag]:
    """``results["flags"]`` as page flags; any level other than ``error`` reads as a warning."""
    found = []
    for flag in results.get("flags") or []:
        if isinstance(flag, Mapping) and flag.get("text"):
            level = "error" if flag.get("level") == "error" else "warning"
            found.append(Flag(level, prefix + str(flag["text"])))
    return found


def scalar_section(title: str, per_model: Any, labels: Mapping[str, str], note: str | None = None) -> Section | None:
    """A table of the plain values in the contract's order (then any others), or None."""
    per_model = mappings(per_model)
    keys = scalar_keys(per_model, list(labels))
    if not keys:
        return None
    blocks: list[Block] = [model_table(per_model, keys=keys, labels=labels)]
    if note:
        blocks.append(Paragraph(note))
    return Section(title, blocks)


def business_section(business: Any, latencies: Any, out_dir: Path) -> Section | None:
    """Latency, time to first token, throughput, memory and cost, plus the latency histogram."""
    section = scalar_section("Business figures", business, BUSINESS_LABELS)
    png = plot_latency_histogram(latencies, out_dir / "latency.png") if isinstance(latencies, Mapping) else None
    if png is None:
        return section
    blocks = section.blocks if section else []
    return Section("Business figures", [*blocks, Image("Latency per request", png)])


def safety_section(safety: Any) -> Section | None:
    """Refusals on harmful prompts, over-refusal on harmless look-alikes and injection success, by category too."""
    per_model = mappings(safety)
    section = scalar_section("Safety (bundled red-team set)", per_model, SAFETY_LABELS)
    by_category = nested_table({n: v.get("by_category") or {} for n, v in per_model.items()}, "category")
    if by_category is None:
        return section
    blocks = section.blocks if section else []
    return Section("Safety (bundled red-team set)", [*blocks, Paragraph("By category:"), by_category])


def forgetting_section(forgetting: Any) -> Section | None:
    """The general-capability probe: overall score and one row per kind of item."""
    flat: dict[str, dict[str, Any]] = {}
    kinds: list[str] = []
    for name, values in mappings(forgetting).items():
        by_kind = values.get("by_kind") if isinstance(values.get("by_kind"), Mapping) else {}
        kinds += [str(k) for k in by_kind if str(k) not in kinds]
        flat[name] = {k: v for k, v in values.items() if k != "by_kind"}
        flat[name].update({f"kind:{k}": v for k, v in by_kind.items()})  # prefixed: a kind named "n" stays apart
    labels = {"score": "overall score", **{f"kind:{k}": f"{k} items" for k in kinds}, "n": "items"}
    return scalar_section("Forgetting (general-capability probe)", flat, labels)


def judge_section(judge: Any) -> Section | None:
    return scalar_section(
        "LLM judge: rubric scores", judge, JUDGE_LABELS, note="Means over the outputs judged; every verdict and its reason is in judge-rubric-<model>.jsonl."
    )


def pairwise_section(pairwise: Any) -> Section | None:
    """The pairwise tally, both orders judged; a pair whose two verdicts disagree is counted as a tie."""
    if not isinstance(pairwise, Mapping) or not pairwise:
        return None
    a, b = str(pairwise.get("a", "a")), str(pairwise.get("b", "b"))
    rows = [
        ("pairs judged (each in both orders)", pairwise.get("pairs")),
        (f"{a} wins", pairwise.get("wins_a")),
        (f"{b} wins", pairwise.get("wins_b")),
        ("ties", pairwise.get("ties")),
        ("inconsistent (the two orders disagreed; counted as ties)", pairwise.get("inconsistent")),
        (f"win rate of {a}", pairwise.get("win_rate_a")),
    ]
    if pairwise.get("rubric") is not None:
        rows.append(("rubric", pairwise["rubric"]))
    table = Table(["", "value"], [[label, fmt(value)] for label, value in rows])
    return Section(f"LLM judge: pairwise, {a} against {b}", [table, Paragraph("Every verdict and its reason is in judge-pairwise.jsonl.")])


def lm_eval_section(lm_eval: Any) -> Section | None:
    table = nested_table(mappings(lm_eval), "task")
    return Section("lm-eval benchmarks", [table]) if table else None


def per_category_section(per_category: Any) -> Section | None:
    table = nested_table(mappings(per_category), "category")
    return Section("Per-category breakdown", [table]) if table else None


def confusion_sections(confusion: Any) -> list[Section]:
    """One confusion table per model (rows: reference label, columns: predicted label)."""
    sections = []
    for name, values in mappings(confusion).items():
        labels, matrix = values.get("labels"), values.get("matrix")
        if isinstance(labels, Sequence) and isinstance(matrix, Sequence) and labels:
            sections.append(Section(f"Confusion table: {name}", [confusion_table(list(labels), list(matrix))]))
    return sections


def samples_section(samples: Any, names: list[str], title: str = "Sample generations") -> Section | None:
    """Each prompt with the reference first and then each column's output, in column order."""
    blocks: list[Block] = []
    for number, sample in enumerate(samples or [], start=1):
        if not isinstance(sample, Mapping):
            continue
        outputs = sample.get("outputs") or {}
        ordered = names + [str(n) for n in outputs if n not in names]
        columns = [("reference", str(sample.get("reference", "")))]
        columns += [(name, str(outputs[name]) if name in outputs else "(not recorded)") for name in ordered]
        blocks.append(Sample(f"Sample {number}", str(sample.get("prompt", "")), columns))
    return Section(title, blocks) if blocks else None


def image_sections(images: list[tuple[str, Path | None]]) -> list[Section]:
    """One section per chart that was drawn (a chart with nothing to draw is None and skipped)."""
    return [Section(caption, [Image(caption, path)]) for caption, path in images if path is not None]


def metric_tables(models: PerModel, timings: Any) -> list[Section]:
    sections = [Section("Metrics", [model_table(models)])]
    timing = mappings(timings)
    if timing:
        sections.append(Section("Timings", [model_table(timing)]))
    return sections
