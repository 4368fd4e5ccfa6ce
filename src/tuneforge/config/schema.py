"""The recipe schema: one pydantic model per recipe section.

This is the single source of truth for every option: the CLI, the YAML recipes and the Python API
all build a :class:`Recipe`. Every model forbids unknown keys so that a typo fails loudly before
any model is loaded, and cross-field rules live in validators here rather than deep in the recipes:
the combinations of data and objective below, and the settings that cannot apply to the rest of the
recipe in :mod:`tuneforge.config.applies`. The allowed ``method.type`` values and their help come from
the method table (:mod:`tuneforge.config.method_table`).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from tuneforge.config.applies import inapplicable_setting
from tuneforge.config.cft import CftOptions
from tuneforge.config.eval import EvalSection
from tuneforge.config.ewc import EwcOptions
from tuneforge.config.grpo import GrpoOptions, grpo_problem
from tuneforge.config.method_table import METHOD_TABLE, METHOD_TYPES, types_reading
from tuneforge.config.methods import (
    AdaLoraOptions,
    BottleneckOptions,
    FreezeOptions,
    IA3Options,
    LoraOptions,
    LycorisOptions,
    MoeOptions,
    OftOptions,
    PrefixOptions,
    PromptTuningOptions,
    PTuningOptions,
    QuantOptions,
    VeraOptions,
)
from tuneforge.config.nlft import NlftOptions
from tuneforge.config.pipeline import PipelineStep, ReplayOptions
from tuneforge.config.ppo import PpoOptions, ppo_problem
from tuneforge.config.rewards import RewardSpec
from tuneforge.config.rft import RftOptions, rft_problem
from tuneforge.config.rlaif import RlaifOptions, rlaif_problem
from tuneforge.config.s3ft import S3ftOptions


class Section(BaseModel):
    """Base for every recipe section: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelSection(Section):
    name: str = Field(
        "smollm2-135m-instruct",
        description="Base model: the built-in name, a local HF directory, a local .gguf file or a hub id.",
    )


MethodType = Literal[METHOD_TYPES]  # the method table's names (config/method_table.py), in its order


def _options(factory: type[BaseModel], name: str, what: str = "") -> Any:
    """A ``method.<name>`` sub-section whose help names the method types that read it (from the table)."""
    readers = ", ".join(types_reading(name))
    return Field(default_factory=factory, description=f"{readers}: {what}" if what else f"{readers}.")


class MethodSection(Section):
    """Which parameters train and how; docs/METHODS.md has a when-to-use table for every type."""

    type: MethodType = Field(
        "lora",
        description="; ".join(f"{name}: {spec.summary}" for name, spec in METHOD_TABLE.items()) + ".",
    )
    lora: LoraOptions = _options(LoraOptions, "lora")
    qlora: QuantOptions = _options(QuantOptions, "qlora", "how the frozen base is quantised.")
    adalora: AdaLoraOptions = _options(AdaLoraOptions, "adalora")
    vera: VeraOptions = _options(VeraOptions, "vera")
    ia3: IA3Options = _options(IA3Options, "ia3")
    loha: LycorisOptions = _options(LycorisOptions, "loha")
    lokr: LycorisOptions = _options(LycorisOptions, "lokr")
    oft: OftOptions = _options(OftOptions, "oft")
    prefix: PrefixOptions = _options(PrefixOptions, "prefix")
    prompt_tuning: PromptTuningOptions = _options(PromptTuningOptions, "prompt_tuning")
    p_tuning: PTuningOptions = _options(PTuningOptions, "p_tuning")
    bottleneck: BottleneckOptions = _options(BottleneckOptions, "bottleneck")
    freeze: FreezeOptions = _options(FreezeOptions, "freeze")
    moe: MoeOptions = _options(MoeOptions, "moe")


class DataSection(Section):
    train: str = Field(..., description="Training data file: .jsonl, .json, .csv or .parquet.")
    format: Literal["auto", "alpaca", "messages", "text", "prompt_completion", "preference", "kto", "prompt"] = Field(
        "auto",
        description="alpaca (instruction/input/output), messages (role/content or ShareGPT from/value), text (raw text), "
        "prompt_completion (TRL's prompt/completion, strings or messages; sft), preference (prompt/chosen/rejected), kto (prompt/completion/label), "
        "prompt (prompt only, a string or messages, plus any columns the rewards read; grpo, rloo, rft); auto infers it from the first row.",
    )
    validation: str | None = Field(None, description="A separate validation file (same format).")
    val_fraction: float = Field(
        0.0, ge=0.0, lt=1.0, description="Fraction of the training file held out for validation when no validation file is given."
    )
    max_length: int = Field(512, ge=8, description="Maximum tokens per example (text is chunked to this length).")
    overlong: Literal["truncate", "drop"] = Field(
        "truncate",
        description="Examples longer than max_length: truncate them (those left with no trained token are dropped and counted) or drop them.",
    )
    on_bad_rows: Literal["error", "skip"] = Field(
        "error",
        description="error: stop before training and list bad rows; skip: leave them out and write them to skipped_rows.jsonl in the run dir.",
    )
    system_prompt: str | None = Field(None, description="System message prepended to every chat example without one.")
    pipeline: list[PipelineStep] = Field(
        default_factory=list,
        description="Data toolkit steps run on data.train before training (normalize, dedup, safety, pii, refusals, balance, judge, augment, templates, convert, chunk); see docs/DATA.md.",
    )
    replay: ReplayOptions | None = Field(None, description="Mix general data into data.train at a ratio (replay buffer against forgetting); see docs/DATA.md.")


class PreferenceOptions(Section):
    """Options of the preference objectives (reward, dpo, orpo, simpo, kto); see docs/PREFERENCE.md."""

    beta: float = Field(
        0.1,
        gt=0,
        description="Preference strength: the KL-penalty coefficient of dpo (all losses) and kto, the reward scale of simpo; unused by orpo (see orpo_lambda) and reward.",
    )
    loss: Literal["sigmoid", "ipo", "hinge", "robust", "conservative"] = Field(
        "sigmoid",
        description="dpo only: sigmoid (DPO), ipo (squared, length-normalised log-ratios), hinge (SLiC), robust (rDPO, unbiased under label noise), conservative (cDPO, label smoothing).",
    )
    label_smoothing: float = Field(
        0.0, ge=0.0, lt=0.5, description="Assumed fraction of flipped preference labels (dpo robust/conservative, simpo)."
    )
    margin: float = Field(0.0, ge=0.0, description="reward only: required reward gap between chosen and rejected (Bradley-Terry with margin).")
    orpo_lambda: float = Field(0.1, gt=0, description="orpo only: weight lambda of the odds-ratio term added to the chosen NLL.")
    gamma: float = Field(0.5, ge=0.0, description="simpo only: target reward margin gamma (the loss at equal averages is log(1 + e^gamma)).")
    sft_weight: float = Field(0.0, ge=0.0, description="simpo/dpo: weight of an extra NLL term on the chosen answer (0 = none).")
    desirable_weight: float = Field(1.0, gt=0, description="kto only: weight of desirable examples' losses.")
    undesirable_weight: float = Field(1.0, gt=0, description="kto only: weight of undesirable examples' losses.")
    precompute_reference: bool = Field(
        False,
        description="dpo/kto: compute the reference log-probs once before training (written to reference_logps.jsonl), so no reference model is kept during training.",
    )
    reference_logps: str | None = Field(
        None, description="dpo/kto: a reference_logps.jsonl from an earlier run, used instead of a reference model (rows are matched by source)."
    )


PREFERENCE_OBJECTIVES = ("reward", "dpo", "orpo", "simpo", "kto")
ONLINE_RL_OBJECTIVES = ("grpo", "rloo", "rft", "ppo", "rlaif")  # the model writes its own answers from prompt rows
REWARD_OBJECTIVES = ("grpo", "rloo", "rft", "ppo")  # ... and objective.rewards score them (rlaif's judge compares instead)


class ObjectiveSection(Section):
    type: Literal["sft", "pretrain", "reward", "dpo", "orpo", "simpo", "kto", "grpo", "rloo", "rft", "ppo", "rlaif", "cft", "nlft", "s3ft"] = Field(
        "sft",
        description="sft: train on assistant turns only; pretrain: continued pretraining on raw text, every token trained; "
        "reward: scalar-head reward model (Bradley-Terry); dpo / orpo / simpo: pairwise preference tuning; kto: unpaired desirable/undesirable feedback; "
        "grpo: online RL with group-normalised advantages (GRPO, Dr.GRPO, DAPO, GSPO); rloo: online RL with a leave-one-out baseline; "
        "rft: rejection sampling (sample, keep what the rewards accept, SFT on it, in rounds); "
        "ppo: PPO-RLHF with a value head, GAE and a KL penalty in the reward; rlaif: an AI judge labels pairs of the policy's samples for DPO; "
        "cft: contextual fine-tuning (a learning prompt before domain text, loss on the text); nlft: token weights from natural-language feedback; "
        "s3ft: selective self-to-supervised fine-tuning.",
    )
    preference: PreferenceOptions = Field(default_factory=PreferenceOptions)
    rewards: list[RewardSpec] = Field(
        default_factory=list, description="grpo, rloo, rft, ppo: the reward functions and their weights (docs/REWARDS.md)."
    )
    grpo: GrpoOptions = Field(default_factory=GrpoOptions, description="grpo, rloo: rollout and loss options (docs/RL.md).")
    rft: RftOptions = Field(default_factory=RftOptions, description="rft: sampling, acceptance and rounds (docs/REWARDS.md).")
    ppo: PpoOptions = Field(default_factory=PpoOptions, description="ppo: rollout, GAE, value and KL options (docs/RL.md).")
    rlaif: RlaifOptions = Field(default_factory=RlaifOptions, description="rlaif: the judge, rubric and DPO mode (docs/RL.md).")
    cft: CftOptions = Field(default_factory=CftOptions, description="cft: the contextual learning prompts (docs/RESEARCH.md).")
    nlft: NlftOptions = Field(default_factory=NlftOptions, description="nlft: the critique judge and token-weight rules (docs/RESEARCH.md).")
    s3ft: S3ftOptions = Field(default_factory=S3ftOptions, description="s3ft: the acceptance judge and paraphrase step (docs/RESEARCH.md).")


class TrainingSection(Section):
    epochs: float = Field(3.0, gt=0, description="Passes over the training data (ignored when max_steps is set).")
    max_steps: int | None = Field(None, gt=0, description="Stop after this many optimizer steps.")
    batch_size: int = Field(8, gt=0, description="Examples per micro-batch.")
    grad_accum: int = Field(1, gt=0, description="Micro-batches per optimizer step; the loss is normalised by trained tokens.")
    learning_rate: float = Field(2e-4, gt=0, description="Peak learning rate (LoRA tolerates 1e-4..1e-3; full tuning wants ~1e-5).")
    lr_scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup"] = Field("cosine", description="LR decay after warmup.")
    warmup_ratio: float = Field(
        0.0,
        ge=0.0,
        lt=1.0,
        description="Fraction of steps spent warming the LR up linearly from 0. Off by default: the first warmup step "
        "has LR 0 and so is wasted (a 12-step LoRA run ended 0.02 held-out loss worse with 5%, docs/SPEED.md); "
        "a few percent can steady full fine-tuning of large models.",
    )
    weight_decay: float = Field(0.0, ge=0.0, description="AdamW weight decay.")
    max_grad_norm: float = Field(1.0, gt=0, description="Gradient clipping threshold.")
    seed: int = Field(42, description="Seeds model init of new weights, data order and the validation split.")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="auto: bf16 on CUDA, bf16 on CPUs with native bf16 (AMX/AVX512-BF16), else fp32."
    )
    logging_steps: int = Field(5, gt=0, description="Write a metrics.jsonl row every N steps.")
    eval_steps: int | None = Field(None, gt=0, description="Validation every N steps (default: once per epoch).")
    save_steps: int | None = Field(None, gt=0, description="Checkpoint every N steps (default: once per epoch).")
    save_total_limit: int = Field(2, gt=0, description="Checkpoints kept on disk.")
    early_stopping_patience: int | None = Field(
        None, gt=0, description="Stop when validation loss has not improved for this many evaluations, then restore the best checkpoint (with eval_steps and no save_steps, a checkpoint is kept at each evaluation)."
    )
    threads: int | None = Field(None, gt=0, description="CPU threads for torch (default: torch's choice).")
    report_to: list[Literal["tensorboard", "mlflow", "wandb"]] = Field(
        default_factory=list,
        description="Also log every metrics.jsonl row to these trackers, offline and inside the run dir: tensorboard (RUN/tensorboard), "
        "mlflow (SQLite store RUN/mlflow.db unless MLFLOW_TRACKING_URI is set), wandb (offline run in RUN/wandb unless WANDB_MODE is set). "
        "Each needs its package: pip install tuneforge[tracking].",
    )
    nonfinite: Literal["stop", "skip"] = Field(
        "stop",
        description="NaN or inf in the loss or a gradient, checked every micro-batch. stop: end the run at that step with "
        "an error naming the step, the loss or gradient and the batch's source rows (metrics.jsonl and summary.json record it; "
        "the last committed checkpoint stays, no final weights are written). skip: drop that optimizer step (no weight "
        "update, gradients zeroed), log it to metrics.jsonl, count it in summary.json and train on.",
    )
    packing: bool = Field(
        False,
        description="Join each micro-batch's examples into one row without padding; position ids keep them apart "
        "(same update as padding). Off by default: on CPU SDPA the block mask was 16% slower than padding (docs/SPEED.md).",
    )
    group_by_length: bool = Field(
        False,
        description="Draw micro-batches of similar length (transformers' LengthGroupedSampler: a random order, sorted "
        "by length within mega-batches of up to 50 micro-batches), so less of each batch is padding. sft, pretrain, cft "
        "and s3ft, without packing. Off by default: it changes the order examples are seen in (docs/SPEED.md).",
    )
    head_chunk_rows: int | None = Field(
        None,
        gt=0,
        description="Fuse the output head with the cross-entropy in chunks of this many trained positions, so "
        "full-vocabulary logits never exist at once (saves memory; off by default: no speed gain on CPU).",
    )
    attention: Literal["auto", "sdpa", "eager"] = Field(
        "auto",
        description="Attention kernel for training. auto: eager on CPU when rows are short (<= 256 tokens) and its "
        "saved probabilities fit in 1 GiB (faster than SDPA's CPU flash kernel there), else the model's own (docs/SPEED.md).",
    )
    compile: Literal["auto", True, False] = Field(
        "auto",
        description="torch.compile the decoder blocks (fuses the work around the matmuls). auto: on CPU, in one process, "
        "when the run trains >= 100k tokens under bf16 (250k under fp32, and there only where share_prefix does not apply), "
        "which repays a cold compile of about a minute (docs/SPEED.md).",
    )
    share_prefix: Literal["auto", True, False] = Field(
        "auto",
        description="Run the leading tokens all rows of a micro-batch share (chat template, fixed instruction) once "
        "instead of once per row; same loss and gradients. auto: on CPU when the examples share at least 16 leading "
        "tokens and nothing random (dropout, NEFTune) touches them; true also shares one dropout mask on the prefix "
        "(docs/SPEED.md). grpo, rloo and ppo: each prompt runs once for its G completions (docs/RL.md).",
    )
    ewc: EwcOptions = Field(default_factory=EwcOptions, description="EWC penalty toward an earlier task's weights (docs/RESEARCH.md).")
    neftune_alpha: float | None = Field(
        None, gt=0, description="NEFTune: uniform noise of this scale on input embeddings while training (e.g. 5; off by default)."
    )
    activation_checkpointing: bool = Field(
        False,
        description="Activation (gradient) checkpointing: recompute each block's activations in backward instead of keeping them: much less memory, "
        "about one extra forward pass of time (docs/SPEED.md has the measured trade).",
    )


class OutputSection(Section):
    dir: str = Field("runs/run", description="Run directory: resolved recipe, adapter/model, checkpoints, metrics, eval.")
    overwrite: bool = Field(False, description="Allow training into a run directory that already holds a finished run.")


class Recipe(Section):
    """A whole training recipe. Cross-section rules are checked here, before anything loads."""

    model: ModelSection = Field(default_factory=ModelSection)
    method: MethodSection = Field(default_factory=MethodSection)
    data: DataSection
    objective: ObjectiveSection = Field(default_factory=ObjectiveSection)
    training: TrainingSection = Field(default_factory=TrainingSection)
    eval: EvalSection = Field(default_factory=EvalSection)
    output: OutputSection = Field(default_factory=OutputSection)

    @model_validator(mode="after")
    def _check_combinations(self) -> Recipe:
        fmt = self.data.format
        if self.objective.type in ("pretrain", "cft") and fmt not in ("auto", "text"):
            raise ValueError(
                f"objective.type '{self.objective.type}' trains on raw text but data.format is '{fmt}'; "
                "set data.format: text, or use objective.type: sft for instruction data"
            )
        if self.objective.type == "sft" and fmt == "text":
            raise ValueError(
                "objective.type 'sft' needs prompt/response data but data.format is 'text'; "
                "set objective.type: pretrain for raw text, or use alpaca, messages or prompt_completion data"
            )
        if self.objective.type in ("nlft", "s3ft") and fmt not in ("auto", "alpaca", "messages"):
            raise ValueError(
                f"objective.type '{self.objective.type}' needs rows ending in an assistant response (alpaca or messages) but data.format is '{fmt}'; "
                "set data.format: auto, alpaca or messages"
            )
        if self.objective.type in ("sft", "pretrain") and fmt in ("preference", "kto"):
            raise ValueError(
                f"objective.type '{self.objective.type}' cannot train on data.format '{fmt}'; "
                "use objective.type dpo, orpo, simpo, kto or reward for preference data"
            )
        if self.objective.type in PREFERENCE_OBJECTIVES:
            allowed = ("auto", "preference", "kto") if self.objective.type == "kto" else ("auto", "preference")
            if fmt not in allowed:
                raise ValueError(
                    f"objective.type '{self.objective.type}' needs {' or '.join(allowed[1:])} data "
                    f"(prompt/chosen/rejected{', or prompt/completion/label' if self.objective.type == 'kto' else ''}) but data.format is '{fmt}'; "
                    "set data.format: auto or preference"
                )
            pref = self.objective.preference
            if (pref.precompute_reference or pref.reference_logps) and self.objective.type not in ("dpo", "kto"):
                raise ValueError(
                    f"objective.preference.precompute_reference / reference_logps apply to dpo and kto only; "
                    f"objective.type '{self.objective.type}' uses no reference model"
                )
            if pref.precompute_reference and pref.reference_logps:
                raise ValueError("objective.preference.precompute_reference and reference_logps are both set; keep one")
            if self.objective.type == "dpo" and pref.loss == "conservative" and pref.label_smoothing == 0:
                raise ValueError("objective.preference.loss 'conservative' needs label_smoothing > 0 (e.g. 0.1); with 0 it is plain sigmoid DPO")
        rl = self.objective.type in ONLINE_RL_OBJECTIVES
        if rl and fmt not in ("auto", "prompt"):
            raise ValueError(
                f"objective.type '{self.objective.type}' samples its own answers and needs prompt rows but data.format is '{fmt}'; "
                "set data.format: prompt (or auto), with a 'prompt' field and the columns the rewards read"
            )
        if fmt == "prompt" and not rl:
            raise ValueError(
                f"data.format 'prompt' has no answers to train on with objective.type '{self.objective.type}'; "
                f"use objective.type {', '.join(ONLINE_RL_OBJECTIVES)}, or data with answers"
            )
        if self.objective.type in REWARD_OBJECTIVES and not self.objective.rewards:
            raise ValueError(
                f"objective.type '{self.objective.type}' needs at least one reward in objective.rewards, "
                "e.g. [{type: answer_match, weight: 2.0}] (docs/REWARDS.md)"
            )
        if self.objective.type not in REWARD_OBJECTIVES and self.objective.rewards:
            raise ValueError(
                f"objective.rewards apply to {', '.join(REWARD_OBJECTIVES)} only; objective.type '{self.objective.type}' does not read them"
            )
        problem = grpo_problem(self) if self.objective.type in ("grpo", "rloo") else rft_problem(self) if self.objective.type == "rft" else None
        if self.objective.type == "ppo":
            problem = ppo_problem(self)
        if self.objective.type == "rlaif":
            problem = rlaif_problem(self)
        if problem:
            raise ValueError(problem)
        if self.data.validation and self.data.val_fraction > 0:
            raise ValueError(
                "data.validation and data.val_fraction are both set; keep one "
                "(a validation file, or a fraction held out from data.train)"
            )
        if self.training.early_stopping_patience and not (self.data.validation or self.data.val_fraction > 0):
            raise ValueError(
                "training.early_stopping_patience needs validation data; set data.validation or data.val_fraction"
            )
        if self.training.precision == "fp16" and self.method.type == "full":
            raise ValueError(
                "training.precision 'fp16' with full fine-tuning overflows without master weights; use bf16 or fp32"
            )
        return self

    @model_validator(mode="after")
    def _check_settings_apply(self) -> Recipe:
        """A setting the rest of the recipe would ignore is an error, never a silent drop (config/applies.py)."""
        problem = inapplicable_setting(self)
        if problem:
            raise ValueError(problem)
        return self

    @property
    def headline_metric(self) -> str | None:
        """The result key a report leads with (eval.task_metric is checked in config/eval.py)."""
        return self.eval.headline_key()
