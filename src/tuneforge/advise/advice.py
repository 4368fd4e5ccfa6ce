"""``tuneforge advise``: data size, a LoRA rank, and per method the trainable parameters and memory.

Everything is computed, nothing looked up: tokens come from rendering the data with the model's own
tokenizer and chat template (as training does), parameter counts from applying each method to the
model's skeleton (:mod:`tuneforge.advise.params`), memory from the component model in
:mod:`tuneforge.advise.memory`. ``measure=True`` also runs a few real steps of the recipe's own method
and reports the measured peak beside the estimate.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tuneforge.advise.data_stats import DataStats, data_stats
from tuneforge.advise.measure import Measured, measure_training_memory
from tuneforge.advise.memory import (
    MemoryEstimate,
    ModelShape,
    TrainingShape,
    estimate_training_memory,
)
from tuneforge.advise.params import (
    MethodFootprint,
    footprint,
    load_config,
    method_section,
)
from tuneforge.advise.rank import RankAdvice, suggest_rank
from tuneforge.config.applies import LM_OBJECTIVES
from tuneforge.config.method_table import METHOD_TYPES
from tuneforge.config.schema import MethodSection, Recipe
from tuneforge.errors import ConfigError
from tuneforge.models.load import load_tokenizer
from tuneforge.models.precision import Precision, choose_precision
from tuneforge.objectives.shared_prefix import declared_randomness
from tuneforge.train.speed_plan import EAGER_BYTES_PER_SCORE, SpeedPlan, plan_speed

# The CPU runtime (Python + torch + transformers + peft) measured as RSS after imports on the
# 2-core test machine; added to the tensors so the total reads as a whole-process figure.
DEFAULT_RUNTIME_MB = 530


@dataclass
class MethodAdvice:
    footprint: MethodFootprint
    memory: MemoryEstimate | None


@dataclass
class Advice:
    model: str
    data: DataStats
    rank: RankAdvice
    batch_size: int
    precision: str
    methods: list[MethodAdvice] = field(default_factory=list)
    # what `tuneforge train` would pick for the recipe's own method (train/speed_plan.py)
    speed_plan: str = ""
    measured: Measured | None = None
    measured_method: str | None = None


def advise(
    recipe: Recipe,
    *,
    methods: list[str] | None = None,
    measure: bool = False,
    measure_steps: int = 3,
    runtime_mb: float = DEFAULT_RUNTIME_MB,
    progress: Callable[[str], None] | None = None,
) -> Advice:
    """Compute the advice for ``recipe`` (its model, data, batch and length); see the module docstring.

    ``progress`` receives a line before each slow part (sizing a method can load the model, e.g.
    qlora quantises it; the measured run trains).
    """
    say = progress or (lambda _line: None)
    names = _checked_method_names(recipe, methods)
    tokenizer = load_tokenizer(recipe.model.name)
    stats = data_stats(recipe, tokenizer)
    sizing = Sizing(recipe, load_config(recipe.model.name), choose_precision(recipe.training.precision), stats, runtime_mb)
    advice = Advice(recipe.model.name, stats, suggest_rank(stats.examples), recipe.training.batch_size, sizing.precision.name)
    advice.speed_plan = sizing.plan(recipe.method).describe()
    for name in names:
        say(f"sizing {name} ...")
        advice.methods.append(sizing.method_advice(method_section(recipe, name)))
    if measure:
        say(f"measuring {measure_steps} real steps of {recipe.method.type} ...")
        advice.measured = measure_training_memory(recipe, steps=measure_steps)
        advice.measured_method = recipe.method.type
    return advice


def _checked_method_names(recipe: Recipe, methods: list[str] | None) -> list[str]:
    """The methods to size (default: every method in the method table), refusing what advise cannot size."""
    if recipe.objective.type not in LM_OBJECTIVES:
        raise ConfigError(
            f"objective.type {recipe.objective.type!r}: advise counts sft and pretrain data",
            hint="run it with objective.type=sft (or pretrain) on the same model to size the methods",
        )
    names = methods or list(METHOD_TYPES)
    unknown = [m for m in names if m not in METHOD_TYPES]
    if unknown:
        raise ConfigError(
            f"--methods: unknown method(s) {unknown}",
            hint=f"choose from: {', '.join(METHOD_TYPES)}",
        )
    return names


@dataclass
class Sizing:
    """What sizing every method of one advice shares: the recipe, the model's config, the precision, the data."""

    recipe: Recipe
    config: Any
    precision: Precision
    stats: DataStats
    runtime_mb: float

    @property
    def autocast(self) -> bool:
        return self.precision.name in ("bf16", "fp16")

    @property
    def total_steps(self) -> int:
        """Optimizer steps of the run (AdaLoRA's budget schedule needs them; they size nothing)."""
        t = self.recipe.training
        return t.max_steps or max(1, math.ceil(math.ceil(self.stats.examples / t.batch_size) / t.grad_accum * t.epochs))

    def plan(self, section: MethodSection) -> SpeedPlan:
        """The speed plan ``tuneforge train`` would pick for this method (the same function it calls)."""
        t = self.recipe.training
        return plan_speed(
            t, section, self.precision, self.config, self.stats.lengths, objective=self.recipe.objective.type,
            shared_tokens=self.stats.shared_prefix_tokens, randomness=declared_randomness(section, self.config, t.neftune_alpha),
        )  # fmt: skip

    def method_advice(self, section: MethodSection) -> MethodAdvice:
        """Parameters of ``section`` applied to the model's skeleton and, where it applies, its memory."""
        fp = footprint(self.config, section, total_steps=self.total_steps)
        if fp.trainable is None:  # the method does not apply to this model; fp.error says why
            return MethodAdvice(fp, None)
        plan = self.plan(section)
        memory = estimate_training_memory(
            ModelShape.from_config(self.config),
            fp.total,
            fp.trainable,
            self.training_shape(fp, plan),
            runtime_bytes=int(self.runtime_mb * 1024 * 1024),
        )
        if plan.compile:
            memory.notes.append("compiled blocks: not modelled, measured 250-305 MB lower")
        return MethodAdvice(fp, memory)

    def training_shape(self, fp: MethodFootprint, plan: SpeedPlan) -> TrainingShape:
        """One step of the run with this method, as the memory model describes it."""
        t = self.recipe.training
        # eager keeps the fp32 softmax output, plus its bf16/fp16 copy under autocast
        score_bytes = (EAGER_BYTES_PER_SCORE if self.autocast else 4) if plan.attention == "eager" else 0
        return TrainingShape(
            batch_size=t.batch_size,
            seq_len=self.stats.max_tokens,
            trained_positions_per_example=self.stats.max_trained_tokens,
            autocast=self.autocast,
            grad_blocks=fp.grad_blocks,
            block_weights_train=fp.block_weights_train,
            lora_dropout_widths=fp.lora_dropout_widths,
            lora_rank_widths=fp.lora_rank_widths,
            dora_output_widths=fp.dora_output_widths,
            quantized_params=fp.quantized_params,
            half_stored_params=fp.frozen_linear_params if plan.frozen_dtype else 0,
            attention_score_bytes=score_bytes,
            activation_checkpointing=t.activation_checkpointing,
            shared_prefix_tokens=self.stats.shared_prefix_tokens if plan.share_prefix else 0,
        )


def render(advice: Advice) -> str:
    """The advice as plain text with one Markdown table (readable in a terminal and pasteable into docs)."""
    d = advice.data
    lines = [
        f"model: {advice.model}",
        f"data: {d.examples} examples from {d.records} records, {d.tokens:,} tokens ({d.trained_tokens:,} trained), "
        f"mean {d.mean_tokens:.0f} / longest {d.max_tokens} tokens per example"
        + (f", {d.truncated} truncated" if d.truncated else "")
        + (f", {d.dropped} dropped by the length policy" if d.dropped else "")
        + (f", {d.bad_rows} bad rows skipped" if d.bad_rows else ""),
        f"suggested LoRA rank: {advice.rank.rank} ({advice.rank.reason})",
        f"speed plan for the recipe's method: {advice.speed_plan}",
        "",
        (
            f"memory estimate for batch {advice.batch_size} x {d.max_tokens} tokens (the longest example), {advice.precision}; "
            "total includes ~the Python/torch runtime:"
        ),
        "",
        "| method | trainable params | % of model | weights MB | grads MB | optimizer MB | activations MB | logits MB | allocator MB | total MB |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for m in advice.methods:
        fp = m.footprint
        if m.memory is None:
            lines.append(f"| {fp.method} | n/a | | | | | | | | {fp.error} |")
            continue
        mb = m.memory.as_mb()
        pct = 100 * fp.trainable / fp.total if fp.total else 0.0
        lines.append(
            f"| {fp.method} | {fp.trainable:,} | {pct:.2f} | {mb['weights']:.0f} | {mb['gradients']:.0f} | {mb['optimizer']:.0f} | "
            f"{mb['activations']:.0f} | {mb['logits']:.0f} | {mb['allocator']:.0f} | {mb['total']:.0f} |"
        )
    notes: dict[str, list[str]] = {}
    for m in advice.methods:
        for note in m.memory.notes if m.memory else ():
            notes.setdefault(note, []).append(m.footprint.method)
    if notes:
        lines += [
            "",
            *(
                f"note ({', '.join(methods)}): {note}"
                for note, methods in notes.items()
            ),
        ]
    if advice.measured is not None:
        ms = advice.measured
        est = next(
            (
                m.memory
                for m in advice.methods
                if m.footprint.method == advice.measured_method and m.memory
            ),
            None,
        )
        lines += [
            "",
            (
                f"measured ({advice.measured_method}, {ms.steps} real steps): peak RSS {ms.peak_mb:.0f} MB, "
                f"runtime after imports {ms.runtime_mb:.0f} MB, training {ms.training_mb:.0f} MB"
            ),
        ]
        if est is not None:
            training_mb = est.training / (1024 * 1024)
            err = (
                100 * (training_mb - ms.training_mb) / ms.training_mb
                if ms.training_mb > 0
                else float("nan")
            )
            lines.append(
                f"estimate for the same: {training_mb:.0f} MB ({est.training_tensors / (1024 * 1024):.0f} MB of tensors at the peak "
                f"+ {est.allocator / (1024 * 1024):.0f} MB allocator; {err:+.0f}% vs measured peak minus runtime)"
            )
    return "\n".join(lines)
