"""AdaLoRA through peft: LoRA in SVD form (P diag(E) Q) whose ranks move to the layers that matter.

Each layer starts at ``init_r``; between ``tinit`` and ``total_steps - tfinal`` the least important
singular values are masked step by step until the average rank reaches ``target_r``. peft only
scores and masks when ``update_and_allocate`` is called after each backward pass, so
:class:`AdaLoraCallback` calls it from the Trainer's public ``on_optimizer_step`` event (after the
step, before gradients are zeroed, as peft requires). Without it AdaLoRA silently is LoRA with
rank ``init_r``.

The orthogonality penalty on P and Q is part of AdaLoRA's objective. peft adds it only when the
model computes its own loss from labels, which tuneforge's token-normalised loss does not do, so
:func:`orthogonal_regularization` computes the same term (tested against peft's own loss).
"""

from __future__ import annotations

import torch
from peft import AdaLoraConfig, PeftModel, get_peft_model
from transformers import PreTrainedModel, TrainerCallback

from tuneforge.config.schema import MethodSection
from tuneforge.errors import ConfigError


def adalora_config(method: MethodSection, total_steps: int) -> AdaLoraConfig:
    o = method.adalora
    if o.tinit + o.tfinal >= total_steps:
        raise ConfigError(
            f"method.adalora: tinit ({o.tinit}) + tfinal ({o.tfinal}) must be below the run's {total_steps} optimizer steps",
            hint="lower tinit/tfinal or train for more steps (training.max_steps / epochs)",
        )
    return AdaLoraConfig(
        init_r=o.init_r,
        target_r=o.target_r,
        lora_alpha=o.alpha,
        lora_dropout=o.dropout,
        target_modules=o.target_modules,
        tinit=o.tinit,
        tfinal=o.tfinal,
        deltaT=o.delta_t,
        beta1=o.beta1,
        beta2=o.beta2,
        orth_reg_weight=o.orth_reg_weight,
        total_step=total_steps,
        task_type="CAUSAL_LM",
    )


def apply_adalora(
    model: PreTrainedModel, method: MethodSection, *, total_steps: int | None = None
) -> PeftModel:
    if total_steps is None:
        raise ConfigError(
            "method.type 'adalora' needs the run's number of optimizer steps for its rank budget schedule",
            hint="pass total_steps to apply_method (the recipes do this from training.max_steps or epochs)",
        )
    try:
        return get_peft_model(model, adalora_config(method, total_steps))
    except ValueError as exc:
        raise ConfigError(
            f"method.adalora: {exc}",
            hint="use 'all-linear' or names such as q_proj, v_proj",
        ) from None


def is_adalora(model) -> bool:
    return (
        isinstance(model, PeftModel)
        and getattr(model.active_peft_config.peft_type, "value", "") == "ADALORA"
    )


def orthogonal_regularization(model: PeftModel) -> torch.Tensor:
    """orth_reg_weight x mean over P/Q matrices of ||P P^T - I||_F (rows of A, columns of B), as AdaLoRA defines it."""
    config = model.active_peft_config
    name = model.active_adapter
    terms = []
    for pname, p in model.named_parameters():
        if not pname.endswith(f".{name}"):
            continue
        if ".lora_A." in pname:
            cov = p @ p.T
        elif ".lora_B." in pname:
            cov = p.T @ p
        else:
            continue
        eye = torch.eye(*cov.size(), out=torch.empty_like(cov))
        terms.append(torch.norm(cov - eye, p="fro"))
    if not terms:
        return torch.zeros(())
    return config.orth_reg_weight * torch.stack(terms).mean()


def active_ranks(model: PeftModel) -> dict[str, int]:
    """Number of unmasked singular values (non-zero E entries) per adapted layer."""
    name = model.active_adapter
    return {
        pname: int((p != 0).sum())
        for pname, p in model.named_parameters()
        if pname.endswith(f"lora_E.{name}")
    }


class AdaLoraCallback(TrainerCallback):
    """Reallocates AdaLoRA ranks after every optimizer step (before gradients are zeroed)."""

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        # The budget schedule must end where the Trainer ends; the recipe's estimate is checked here.
        allocator = model.base_model.rankallocator
        if state.max_steps and state.max_steps != model.active_peft_config.total_step:
            allocator.set_total_step(state.max_steps)

    def on_optimizer_step(self, args, state, control, model=None, **kwargs):
        model.base_model.update_and_allocate(state.global_step)
