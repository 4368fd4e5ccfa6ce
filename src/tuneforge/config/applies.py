"""Settings that cannot apply to the rest of their recipe: each is an error before anything loads.

Without these rules the run would start and then quietly drop the setting (packing for a preference
objective, the fused head for prompt tuning, ``compile: true`` for a method that runs eagerly), or
stop with a ConfigError after minutes of loading (a reward run with a method the reward model
cannot take). The schema calls :func:`inapplicable_setting` from its recipe validator; each message
names the key and the fix, like every other recipe error. What a method can do comes from the
method table (``config/method_table.py``), so a new method gets these rules from its entry.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tuneforge.config.method_table import lora_options, method_spec, types_where
from tuneforge.config.methods import LoraOptions

if TYPE_CHECKING:  # the schema imports this module; the type is for annotations only
    from tuneforge.config.schema import Recipe

# Objectives trained by the causal-LM trainer (train/trainer.py): the only ones with packing, the fused
# chunked head, LoRA+ parameter groups, AdaLoRA's orthogonality penalty, compiled blocks, NEFTune and EWC.
LM_OBJECTIVES = ("sft", "pretrain", "cft", "s3ft")  # the objectives trained by recipes/sft.py


def inapplicable_setting(recipe: Recipe) -> str | None:
    """The first setting of ``recipe`` that cannot apply, as an error message; None when all apply."""
    return _method_problem(recipe) or _training_problem(recipe) or _schedule_problem(recipe) or _research_problem(recipe)


def _method_problem(recipe: Recipe) -> str | None:
    method, objective = recipe.method, recipe.objective.type
    spec = method_spec(method.type)
    for key, value in spec.lora_preset.items():
        given = getattr(method.lora, key)
        if given != LoraOptions.model_fields[key].default and given != value:
            return (
                f"method.lora.{key} is {given!r} but method.type '{method.type}' sets it to {value!r}; "
                f"remove method.lora.{key}, or use method.type: lora"
            )
    if objective == "reward" and not spec.reward_model:
        return (
            f"objective.type 'reward' supports method.type {', '.join(types_where('reward_model'))}, not '{method.type}'; "
            "use method.type: lora (default), full, or freeze with method.freeze.train_last_n_layers: 0 for a frozen backbone"
        )
    if objective == "reward" and "lora" in spec.options and method.lora.modules_to_save:
        return (
            "method.lora.modules_to_save is not used by objective.type 'reward': the reward model trains and saves "
            "its score head beside the adapter, nothing else; remove method.lora.modules_to_save"
        )
    if objective not in LM_OBJECTIVES and "lora" in spec.options and lora_options(method).loraplus_lr_ratio is not None:
        return (
            f"LoRA+ (method.type loraplus, or method.lora.loraplus_lr_ratio) needs the sft/pretrain trainer's optimizer; "
            f"objective.type '{objective}' trains at one learning rate; use method.type: lora without "
            "method.lora.loraplus_lr_ratio, or objective.type sft / pretrain"
        )
    if "adalora" in spec.options:
        return _adalora_problem(recipe)
    return None


def _adalora_problem(recipe: Recipe) -> str | None:
    opts, objective, max_steps = recipe.method.adalora, recipe.objective.type, recipe.training.max_steps
    if objective not in LM_OBJECTIVES and opts.orth_reg_weight > 0:
        return (
            f"method.adalora.orth_reg_weight ({opts.orth_reg_weight}) is not applied by objective.type '{objective}' "
            "(its trainer does not add AdaLoRA's orthogonality penalty); set method.adalora.orth_reg_weight: 0, "
            "or use objective.type sft / pretrain"
        )
    if max_steps and opts.tinit + opts.tfinal >= max_steps:
        return (
            f"method.adalora: tinit ({opts.tinit}) + tfinal ({opts.tfinal}) must be below training.max_steps ({max_steps}); "
            "lower tinit/tfinal or raise training.max_steps"
        )
    return None


def _training_problem(recipe: Recipe) -> str | None:
    training, objective, method_type = recipe.training, recipe.objective.type, recipe.method.type
    spec = method_spec(method_type)
    if training.packing and objective not in LM_OBJECTIVES:
        return (
            f"training.packing applies to objective.type sft and pretrain; objective.type '{objective}' pads its "
            "pairs and would ignore it; set training.packing: false"
        )
    if training.packing and spec.prompt_learning:
        return (
            f"training.packing cannot apply to method.type '{method_type}': a prompt-learning method prepends its "
            "virtual tokens once per row, so the other examples of a packed row would not see them; set training.packing: false"
        )
    if training.group_by_length and objective not in LM_OBJECTIVES:
        return (
            f"training.group_by_length applies to objective.type sft, pretrain, cft and s3ft; objective.type "
            f"'{objective}' draws its batches its own way and would ignore it; remove training.group_by_length"
        )
    if training.group_by_length and training.packing:
        return (
            "training.group_by_length saves padding, and training.packing leaves none to save (each micro-batch is "
            "one row); set one of them to false"
        )
    if training.head_chunk_rows and objective not in LM_OBJECTIVES:
        return (
            f"training.head_chunk_rows applies to the sft and pretrain loss; objective.type '{objective}' computes "
            "its log-probs without it; remove training.head_chunk_rows"
        )
    if training.head_chunk_rows and spec.prompt_learning:
        return (
            f"training.head_chunk_rows cannot apply to method.type '{method_type}': a prompt-learning method's loss "
            "comes from the peft model's full logits (virtual tokens included); remove training.head_chunk_rows"
        )
    if training.compile is True and objective not in LM_OBJECTIVES:
        return (
            f"training.compile: true compiles the sft and pretrain trainer only; objective.type '{objective}' runs "
            "eagerly (its policy and reference passes would each compile, not measured); set training.compile: auto or false"
        )
    if training.compile is True and not spec.compiles:
        return (
            f"training.compile: true cannot apply to method.type '{method_type}', which runs eagerly "
            f"({', '.join(types_where('compiles', False))} do); "
            "set training.compile: auto or false"
        )
    if training.eval_steps and not (recipe.data.validation or recipe.data.val_fraction > 0):
        return "training.eval_steps needs validation data; set data.validation or data.val_fraction, or remove training.eval_steps"
    return None


def _schedule_problem(recipe: Recipe) -> str | None:
    """LR schedule and checkpoint settings that transformers would ignore or reject only once training starts."""
    t = recipe.training
    if t.warmup_ratio > 0 and t.lr_scheduler == "constant":
        return (
            f"training.warmup_ratio ({t.warmup_ratio}) has no effect with training.lr_scheduler 'constant'; "
            "use lr_scheduler: constant_with_warmup, or set warmup_ratio: 0"
        )
    if t.early_stopping_patience and t.save_steps:
        # the best checkpoint is restored at the end, so every evaluation must have a checkpoint
        if not t.eval_steps:
            return (
                "training.early_stopping_patience restores the best checkpoint, so checkpoints must follow evaluations: "
                "with training.save_steps set, set training.eval_steps too (save_steps a multiple of it), or remove save_steps"
            )
        if t.save_steps % t.eval_steps:
            return (
                f"training.save_steps ({t.save_steps}) must be a multiple of training.eval_steps ({t.eval_steps}) "
                "with training.early_stopping_patience, so the best evaluation has a checkpoint to restore"
            )
    return None


def _research_problem(recipe: Recipe) -> str | None:
    """NEFTune and EWC live in the causal-LM trainer (train/trainer.py, train/ewc.py) only."""
    t, objective = recipe.training, recipe.objective.type
    if t.neftune_alpha is not None and objective not in LM_OBJECTIVES:
        return (
            f"training.neftune_alpha applies to objective.type {', '.join(LM_OBJECTIVES)}; objective.type '{objective}' "
            "trains with another trainer, where the noise was not tested; remove training.neftune_alpha"
        )
    if (t.ewc.from_run or t.ewc.save_fisher) and objective not in LM_OBJECTIVES:
        return (
            f"training.ewc applies to objective.type {', '.join(LM_OBJECTIVES)}; objective.type '{objective}' "
            "does not add the penalty; remove training.ewc.from_run / save_fisher"
        )
    if objective == "nlft" and method_spec(recipe.method.type).prompt_learning:
        return (
            f"objective.type 'nlft' scores the response under three prompts with the model's plain forward; method.type "
            f"'{recipe.method.type}' prepends virtual tokens that shift those positions; use method.type: lora (or another non-prompt method)"
        )
    return None
