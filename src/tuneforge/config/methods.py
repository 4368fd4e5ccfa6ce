"""Recipe options for every parameter strategy (the ``method`` section's sub-sections).

Kept apart from ``schema.py`` because there are many of them and they change together with
``tuneforge.methods``; ``schema.MethodSection`` imports them. Each option group is used by one
family of methods, and the ``method.type`` values that share a family share its options (``dora``,
``rslora``, ``pissa``, ``loraplus`` and ``qlora`` all read ``method.lora``).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

TargetModules = str | list[str]

_TARGET_HELP = "'all-linear' (every linear layer but the output head), a list of module names, or a regex string."


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class LoraOptions(_Options):
    r: int = Field(16, gt=0, description="LoRA rank.")
    alpha: float = Field(
        32.0,
        gt=0,
        description="LoRA scaling numerator (scale = alpha / r, or alpha / sqrt(r) with rsLoRA).",
    )
    dropout: float = Field(
        0.05,
        ge=0.0,
        lt=1.0,
        description="Dropout on the LoRA input. On CPU its masks cost ~10% of a LoRA step on all linear layers (docs/SPEED.md); 0 skips them.",
    )
    target_modules: TargetModules = Field("all-linear", description=_TARGET_HELP)
    modules_to_save: list[str] = Field(
        default_factory=list,
        description="Modules trained in full beside the adapter and saved with it, e.g. ['embed_tokens', 'lm_head'] after adding tokens.",
    )
    use_rslora: bool = Field(
        False,
        description="rsLoRA: scale by alpha / sqrt(r), so high ranks keep learning (method.type rslora sets it).",
    )
    use_dora: bool = Field(
        False,
        description="DoRA: learn a magnitude vector beside the low-rank direction (method.type dora sets it).",
    )
    init: Literal["default", "gaussian", "pissa"] = Field(
        "default",
        description="default: A Kaiming, B zero; gaussian: A Gaussian; pissa: A, B from the top singular vectors of W (method.type pissa sets it).",
    )
    pissa_niter: int | None = Field(
        None,
        gt=0,
        description="PiSSA with a fast randomised SVD of this many subspace iterations (None: exact SVD).",
    )
    loraplus_lr_ratio: float | None = Field(
        None,
        ge=1.0,
        description="LoRA+: learning rate of the B matrices = ratio x training.learning_rate (method.type loraplus defaults it to 16).",
    )


class QuantOptions(_Options):
    bits: Literal[4] = Field(
        4, description="Weight bits of the frozen base (bitsandbytes 4-bit)."
    )
    quant_type: Literal["nf4", "fp4"] = Field(
        "nf4", description="nf4 (NormalFloat, the QLoRA paper's choice) or fp4."
    )
    double_quant: bool = Field(
        True,
        description="Quantise the quantisation constants too (saves ~0.4 bit per weight).",
    )
    compute_dtype: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto",
        description="dtype the 4-bit weights are dequantised to for each matmul. auto: what training.precision auto picks "
        "on this machine: bf16 on CUDA with bf16 and on CPUs with native bf16 (AMX, AVX512-BF16), fp16 on older CUDA, "
        "fp32 on other CPUs (bf16 is emulated there: a QLoRA step ran 13-19x slower in bf16 than in fp32 on an AVX2-only EPYC).",
    )


class AdaLoraOptions(_Options):
    init_r: int = Field(12, gt=0, description="Starting rank of every adapted layer.")
    target_r: int = Field(
        8, gt=0, description="Average rank left once the budget schedule ends."
    )
    alpha: float = Field(32.0, gt=0, description="Scaling numerator, as for LoRA.")
    dropout: float = Field(
        0.0, ge=0.0, lt=1.0, description="Dropout on the adapter input."
    )
    target_modules: TargetModules = Field("all-linear", description=_TARGET_HELP)
    tinit: int = Field(0, ge=0, description="Warm-up steps before ranks are pruned.")
    tfinal: int = Field(
        0,
        ge=0,
        description="Final steps with the ranks fixed (fine-tuning the kept ranks).",
    )
    delta_t: int = Field(1, gt=0, description="Reallocate ranks every this many steps.")
    beta1: float = Field(
        0.85, gt=0, lt=1, description="EMA factor for the sensitivity scores."
    )
    beta2: float = Field(
        0.85, gt=0, lt=1, description="EMA factor for the sensitivity uncertainty."
    )
    orth_reg_weight: float = Field(
        0.5, ge=0.0, description="Weight of the orthogonality penalty on P and Q."
    )

    @model_validator(mode="after")
    def _ranks(self) -> AdaLoraOptions:
        if self.target_r > self.init_r:
            raise ValueError(
                f"method.adalora.target_r ({self.target_r}) must not exceed init_r ({self.init_r})"
            )
        return self


class VeraOptions(_Options):
    r: int = Field(
        256,
        gt=0,
        description="Rank of the shared frozen random matrices (VeRA affords a high rank: only two vectors per layer train).",
    )
    d_initial: float = Field(
        0.1,
        gt=0,
        description="Initial value of the d scaling vector (b starts at zero, so the model is unchanged).",
    )
    dropout: float = Field(
        0.0, ge=0.0, lt=1.0, description="Dropout on the adapter input."
    )
    target_modules: TargetModules = Field(
        ["q_proj", "v_proj"],
        description="Layers to adapt; all must share one shape family (VeRA shares one A/B pair). "
        + _TARGET_HELP,
    )
    projection_seed: int = Field(
        0, description="Seed of the shared random projections (saved with the adapter)."
    )


class IA3Options(_Options):
    target_modules: TargetModules = Field(
        ["k_proj", "v_proj", "down_proj"],
        description="Layers whose activations are rescaled by a learned vector.",
    )
    feedforward_modules: list[str] = Field(
        ["down_proj"],
        description="Of target_modules, those in the MLP: their input, not output, is rescaled.",
    )


class LycorisOptions(_Options):
    r: int = Field(8, gt=0, description="Rank of the factors.")
    alpha: float = Field(
        8.0, gt=0, description="Scaling numerator (scale = alpha / r)."
    )
    rank_dropout: float = Field(
        0.0, ge=0.0, lt=1.0, description="Dropout on ranks during training."
    )
    module_dropout: float = Field(
        0.0,
        ge=0.0,
        lt=1.0,
        description="Probability of skipping a whole adapted layer during training.",
    )
    target_modules: TargetModules = Field("all-linear", description=_TARGET_HELP)


class OftOptions(_Options):
    block_size: int = Field(
        16,
        gt=0,
        description="Size of each orthogonal block (must divide the layers' input width).",
    )
    target_modules: TargetModules = Field("all-linear", description=_TARGET_HELP)
    coft: bool = Field(
        False,
        description="Constrained OFT: keep the rotation within eps of the identity.",
    )
    eps: float = Field(6e-5, gt=0, description="Constraint radius for coft.")
    module_dropout: float = Field(
        0.0,
        ge=0.0,
        lt=1.0,
        description="Probability of skipping a whole adapted layer during training.",
    )


class PrefixOptions(_Options):
    num_virtual_tokens: int = Field(
        20, gt=0, description="Learned key/value positions prepended at every layer."
    )
    projection: bool = Field(
        False,
        description="Reparameterise the prefix through a 2-layer MLP (P-Tuning v2 / the prefix-tuning paper); method.type p_tuning_v2 sets it.",
    )
    encoder_hidden_size: int = Field(
        256, gt=0, description="Hidden width of the reparameterisation MLP."
    )


class PromptTuningOptions(_Options):
    num_virtual_tokens: int = Field(
        20, gt=0, description="Learned soft-prompt embeddings prepended to the input."
    )
    init_text: str | None = Field(
        None,
        description="Initialise the soft prompt from the embeddings of this text (better than random for small models).",
    )


class PTuningOptions(_Options):
    num_virtual_tokens: int = Field(
        20, gt=0, description="Virtual tokens produced by the prompt encoder."
    )
    encoder: Literal["mlp", "lstm"] = Field(
        "mlp", description="Prompt encoder: an MLP or a bidirectional LSTM + MLP."
    )
    encoder_hidden_size: int = Field(
        128, gt=0, description="Hidden width of the prompt encoder."
    )
    encoder_num_layers: int = Field(2, gt=0, description="Layers of the LSTM encoder.")
    encoder_dropout: float = Field(
        0.0, ge=0.0, lt=1.0, description="Dropout in the prompt encoder."
    )


class BottleneckOptions(_Options):
    reduction_factor: int = Field(
        16, gt=0, description="Bottleneck width = hidden size / reduction_factor."
    )
    placement: list[Literal["attention", "mlp"]] = Field(
        ["attention", "mlp"],
        min_length=1,
        description="After which sub-layers of every block an adapter sits (Houlsby: both; Pfeiffer: mlp).",
    )
    non_linearity: Literal["relu", "gelu", "silu", "tanh"] = Field(
        "relu", description="Activation between down- and up-projection."
    )
    layers: list[int] | None = Field(
        None, description="Block indices that get adapters (default: every block)."
    )


DEFAULT_TRAIN_LAST_N_LAYERS = 2


class FreezeOptions(_Options):
    train_last_n_layers: int | None = Field(
        None,
        ge=0,
        description="Number of final transformer blocks left trainable; the rest are frozen (default 2 unless train_fraction is set).",
    )
    train_fraction: float | None = Field(
        None,
        gt=0.0,
        le=1.0,
        description="Train this fraction of the final blocks instead (rounded up); excludes train_last_n_layers.",
    )
    train_modules: list[str] = Field(
        default_factory=list,
        description="Extra parameters to train: name substrings (e.g. 'lm_head', 'model.norm') or regexes written as 're:PATTERN'.",
    )
    train_embeddings: bool = Field(
        False, description="Also train the input embeddings (and a tied output head)."
    )
    train_norms: bool = Field(
        False, description="Also train every normalisation layer's weights."
    )

    @model_validator(mode="after")
    def _one_depth(self) -> FreezeOptions:
        if self.train_fraction is not None and self.train_last_n_layers is not None:
            raise ValueError(
                "method.freeze: set train_last_n_layers or train_fraction, not both"
            )
        return self


class MoeOptions(_Options):
    train_shared_experts: bool = Field(
        True,
        description="Also train always-on shared experts (Qwen-MoE, DeepSeek-MoE) where the model has them.",
    )
    train_attention: bool = Field(False, description="Also train the attention layers.")
