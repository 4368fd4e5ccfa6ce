"""Settings that cannot apply are ConfigErrors from the schema, naming the key and the fix; the
nearest setting that does apply still validates (so each rule is no wider than its reason)."""

from __future__ import annotations

import pytest

from tuneforge.config import load_recipe
from tuneforge.errors import ConfigError

PREF = ["data.format=preference"]


def recipe(*overrides: str):
    return load_recipe(base={"data": {"train": "t.jsonl"}}, overrides=list(overrides))


# (what cannot apply, the nearest recipe that does, a fragment of the message)
CASES = {
    "packing-preference": (
        ["training.packing=true", "objective.type=dpo", *PREF],
        ["training.packing=true"],
        "training.packing applies to objective.type sft and pretrain",
    ),
    "packing-reward": (
        ["training.packing=true", "objective.type=reward", *PREF],
        ["objective.type=reward", *PREF],
        "set training.packing: false",
    ),
    "packing-prompt-learning": (
        ["training.packing=true", "method.type=prefix_tuning"],
        ["training.packing=true", "method.type=ia3"],
        "training.packing cannot apply to method.type 'prefix_tuning'",
    ),
    "head-chunks-preference": (
        ["training.head_chunk_rows=256", "objective.type=kto", *PREF],
        ["training.head_chunk_rows=256", "objective.type=pretrain", "data.format=text"],
        "remove training.head_chunk_rows",
    ),
    "head-chunks-prompt-learning": (
        ["training.head_chunk_rows=256", "method.type=prompt_tuning"],
        ["training.head_chunk_rows=256", "method.type=dora"],
        "training.head_chunk_rows cannot apply to method.type 'prompt_tuning'",
    ),
    "group-by-length-preference": (
        ["training.group_by_length=true", "objective.type=dpo", *PREF],
        ["training.group_by_length=true"],
        "training.group_by_length applies to objective.type sft, pretrain, cft and s3ft",
    ),
    "group-by-length-packing": (
        ["training.group_by_length=true", "training.packing=true"],
        ["training.group_by_length=true", "training.packing=false"],
        "training.packing leaves none to save",
    ),
    "compile-preference": (
        ["training.compile=true", "objective.type=simpo", *PREF],
        ["training.compile=auto", "objective.type=simpo", *PREF],
        "training.compile: true compiles the sft and pretrain trainer only",
    ),
    "compile-eager-method": (
        ["training.compile=true", "method.type=qlora"],
        ["training.compile=true", "method.type=lora"],
        "training.compile: true cannot apply to method.type 'qlora'",
    ),
    "reward-method": (
        ["objective.type=reward", *PREF, "method.type=dora"],
        ["objective.type=reward", *PREF, "method.type=freeze"],
        "objective.type 'reward' supports method.type full, freeze, lora, not 'dora'",
    ),
    "reward-modules-to-save": (
        ["objective.type=reward", *PREF, "method.lora.modules_to_save=[lm_head]"],
        ["method.lora.modules_to_save=[lm_head]"],
        "remove method.lora.modules_to_save",
    ),
    "loraplus-preference": (
        ["method.type=loraplus", "objective.type=dpo", *PREF],
        ["method.type=loraplus"],
        "LoRA+ (method.type loraplus, or method.lora.loraplus_lr_ratio)",
    ),
    "loraplus-ratio-reward": (
        ["method.lora.loraplus_lr_ratio=8", "objective.type=reward", *PREF],
        ["method.lora.loraplus_lr_ratio=8"],
        "objective.type 'reward' trains at one learning rate",
    ),
    "adalora-penalty-preference": (
        ["method.type=adalora", "objective.type=orpo", *PREF],
        ["method.type=adalora", "objective.type=orpo", *PREF, "method.adalora.orth_reg_weight=0"],
        "set method.adalora.orth_reg_weight: 0",
    ),
    "adalora-schedule": (
        ["method.type=adalora", "method.adalora.tinit=3", "method.adalora.tfinal=2", "training.max_steps=5"],
        ["method.type=adalora", "method.adalora.tinit=3", "method.adalora.tfinal=2", "training.max_steps=6"],
        "must be below training.max_steps (5)",
    ),
    "pissa-other-init": (
        ["method.type=pissa", "method.lora.init=gaussian"],
        ["method.type=pissa", "method.lora.init=pissa"],
        "method.lora.init is 'gaussian' but method.type 'pissa' sets it to 'pissa'",
    ),
    "eval-steps-without-validation": (
        ["training.eval_steps=10"],
        ["training.eval_steps=10", "data.val_fraction=0.1"],
        "training.eval_steps needs validation data",
    ),
    "warmup-with-constant-schedule": (
        ["training.lr_scheduler=constant", "training.warmup_ratio=0.1"],
        ["training.lr_scheduler=constant_with_warmup", "training.warmup_ratio=0.1"],
        "has no effect with training.lr_scheduler 'constant'",
    ),
    "early-stopping-saves-without-evaluating": (
        ["training.early_stopping_patience=2", "data.val_fraction=0.1", "training.save_steps=10"],
        ["training.early_stopping_patience=2", "data.val_fraction=0.1", "training.save_steps=10", "training.eval_steps=5"],
        "with training.save_steps set, set training.eval_steps too",
    ),
    "early-stopping-saves-between-evaluations": (
        ["training.early_stopping_patience=2", "data.val_fraction=0.1", "training.save_steps=10", "training.eval_steps=4"],
        ["training.early_stopping_patience=2", "data.val_fraction=0.1", "training.eval_steps=4"],
        "training.save_steps (10) must be a multiple of training.eval_steps (4)",
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_setting_that_cannot_apply_is_a_config_error(name):
    wrong, right, fragment = CASES[name]
    with pytest.raises(ConfigError) as exc:
        recipe(*wrong)
    assert fragment in exc.value.message
    recipe(*right)  # the nearest recipe that applies every setting is valid


def test_message_names_the_key_and_a_fix():
    with pytest.raises(ConfigError) as exc:
        recipe("training.packing=true", "method.type=p_tuning")
    text = exc.value.message
    assert "training.packing" in text and "set training.packing: false" in text


def test_the_defaults_apply_to_every_objective_and_method():
    for objective, data in [("sft", []), ("pretrain", ["data.format=text"]), ("dpo", PREF), ("kto", PREF), ("reward", PREF)]:
        for method_type in ("lora", "full", "freeze"):
            recipe(f"objective.type={objective}", f"method.type={method_type}", *data)
