"""The LoRA family through peft: LoRA, rsLoRA, DoRA, PiSSA initialisation and LoRA+.

LoRA is the default first choice: a few MB of trainable weights, identity at init (B = 0),
mergeable. The variants are options of the same adapter, and ``method.type`` names them for
convenience: ``rslora``, ``dora``, ``pissa`` and ``loraplus`` are ``lora`` with the matching option
forced on (their entries in the method table, applied by ``config.method_table.lora_options``, which
the speed plan and ``advise`` read too). LoRA+ changes only the optimizer (a higher learning rate for
the B matrices, see :mod:`tuneforge.train.trainer`), so the adapter it saves is a plain LoRA adapter.

PiSSA starts A and B from the top singular vectors of W and replaces W by the residual, so the
model is unchanged at init but the base weights are not the original ones any more. To keep the
saved adapter usable on the untouched base (like any other LoRA), the adapter is saved in peft's
converted form (``path_initial_model_for_weight_conversion``): a rank-2r LoRA holding the change
since init. The initial adapter is kept in a temporary directory for that conversion.
"""

from __future__ import annotations

import tempfile
import weakref
from pathlib import Path

from peft import LoraConfig, PeftModel, get_peft_model
from transformers import PreTrainedModel

from tuneforge.config.method_table import lora_options, method_spec
from tuneforge.config.schema import MethodSection
from tuneforge.errors import ConfigError

# PiSSA models -> the temporary directory holding their initial adapter (removed with the model).
_PISSA_INIT: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def loraplus_ratio(method: MethodSection) -> float | None:
    """The LoRA+ learning-rate ratio for B, or None when the optimizer should be the plain one."""
    if "lora" not in method_spec(method.type).options:  # only the LoRA family reads method.lora
        return None
    return lora_options(method).loraplus_lr_ratio


def lora_config(method: MethodSection) -> LoraConfig:
    opts = lora_options(method)
    if opts.init == "pissa":
        init: bool | str = (
            f"pissa_niter_{opts.pissa_niter}" if opts.pissa_niter else "pissa"
        )
    else:
        init = "gaussian" if opts.init == "gaussian" else True
    return LoraConfig(
        r=opts.r,
        lora_alpha=opts.alpha,
        lora_dropout=opts.dropout,
        target_modules=opts.target_modules,
        modules_to_save=list(opts.modules_to_save) or None,
        use_rslora=opts.use_rslora,
        use_dora=opts.use_dora,
        init_lora_weights=init,
        task_type="CAUSAL_LM",
        bias="none",
    )


def apply_lora(model: PreTrainedModel, method: MethodSection) -> PeftModel:
    config = lora_config(method)
    _check_modules_to_save(model, config.modules_to_save or [])
    try:
        peft_model = get_peft_model(model, config)
    except ValueError as exc:  # peft raises ValueError when target modules match nothing
        raise ConfigError(
            f"method.lora.target_modules {method.lora.target_modules!r}: {exc}",
            hint="use 'all-linear' or names such as q_proj, v_proj",
        ) from None
    if lora_options(method).init == "pissa":
        init_dir = tempfile.TemporaryDirectory(prefix="tuneforge-pissa-init-")
        peft_model.save_pretrained(init_dir.name)
        _PISSA_INIT[peft_model] = init_dir
    return peft_model


def pissa_init_dir(model: PeftModel) -> Path | None:
    """Where the initial PiSSA adapter of ``model`` is kept (None for other adapters)."""
    held = _PISSA_INIT.get(model)
    return Path(held.name) if held is not None else None


def _check_modules_to_save(model: PreTrainedModel, names: list[str]) -> None:
    """peft silently ignores modules_to_save names that match nothing; a typo would then train nothing extra."""
    leaf_names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()} | {
        name for name, _ in model.named_modules()
    }
    missing = [n for n in names if n not in leaf_names]
    if missing:
        raise ConfigError(
            f"method.lora.modules_to_save: no module is named {missing}",
            hint="names look like 'embed_tokens' or 'lm_head'",
        )
