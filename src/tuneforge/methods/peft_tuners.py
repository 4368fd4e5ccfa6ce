"""Other weight-space adapters from peft: VeRA, IA3, LoHa, LoKr, OFT.

All of them leave the base frozen, train a small module per adapted layer, save as a peft adapter
and can be merged into the weights. They differ in how the weight change is parameterised:

- VeRA: one pair of frozen random matrices shared by all layers; per layer only two scaling
  vectors train (b starts at zero, so the model is unchanged at init). Tiny adapters.
- IA3: rescales keys, values and the MLP's inner activations by learned vectors (ones at init).
- LoHa / LoKr (LyCORIS): the change is a Hadamard / Kronecker product of low-rank factors, which
  reaches a higher effective rank for the same parameter count.
- OFT: multiplies each weight by a learned block-diagonal orthogonal matrix (identity at init),
  which preserves the angles between neurons and so much of the pretrained knowledge.
"""

from __future__ import annotations

from peft import (
    IA3Config,
    LoHaConfig,
    LoKrConfig,
    OFTConfig,
    PeftModel,
    VeraConfig,
    get_peft_model,
)
from transformers import PreTrainedModel

from tuneforge.config.schema import MethodSection
from tuneforge.errors import ConfigError


def peft_tuner_config(method: MethodSection):
    t = method.type
    if t == "vera":
        o = method.vera
        return VeraConfig(
            r=o.r, target_modules=o.target_modules, vera_dropout=o.dropout, d_initial=o.d_initial,
            projection_prng_key=o.projection_seed, save_projection=True, task_type="CAUSAL_LM",
        )  # fmt: skip
    if t == "ia3":
        o = method.ia3
        return IA3Config(
            target_modules=o.target_modules,
            feedforward_modules=o.feedforward_modules,
            task_type="CAUSAL_LM",
        )
    if t in ("loha", "lokr"):
        o = method.loha if t == "loha" else method.lokr
        cls = LoHaConfig if t == "loha" else LoKrConfig
        return cls(
            r=o.r, alpha=o.alpha, rank_dropout=o.rank_dropout, module_dropout=o.module_dropout,
            target_modules=o.target_modules, task_type="CAUSAL_LM",
        )  # fmt: skip
    if t == "oft":
        o = method.oft
        return OFTConfig(
            r=0, oft_block_size=o.block_size, target_modules=o.target_modules, coft=o.coft, eps=o.eps,
            module_dropout=o.module_dropout, task_type="CAUSAL_LM",
        )  # fmt: skip
    raise ValueError(f"not a peft tuner method: {t}")


def apply_peft_tuner(model: PreTrainedModel, method: MethodSection) -> PeftModel:
    config = peft_tuner_config(method)
    try:
        return get_peft_model(model, config)
    except (
        ValueError,
        TypeError,
    ) as exc:  # no matching modules, shapes the tuner cannot handle
        raise ConfigError(
            f"method.{method.type}: {exc}",
            hint=f"check method.{method.type}.target_modules and sizes",
        ) from None
