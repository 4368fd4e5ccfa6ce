"""Every ``method.type`` and what the rest of tuneforge needs to know about it, one entry per method.

The schema builds its allowed ``method.type`` values and cross-field rules from this table, and the
layers above ask it instead of keeping their own lists of names: ``tuneforge.methods`` maps each
entry's *family* to the code that applies, saves and loads it, the speed plan reads whether a method
compiles, the export whether it merges, ``advise`` which methods exist. It is plain data (no torch,
no peft) because the config layer sits below the methods layer and must not import it.

Adding a method of an existing family is one entry here (plus its options in ``config/methods.py``
if it has new ones, and for the ``peft_tuner`` and ``prompt`` families the peft config it builds).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Literal

from tuneforge.config.methods import LoraOptions

if TYPE_CHECKING:  # the schema imports this module; the type is for annotations only
    from tuneforge.config.schema import MethodSection

Family = Literal["full", "freeze", "moe", "lora", "qlora", "adalora", "peft_tuner", "prompt", "bottleneck"]


@dataclass(frozen=True)
class MethodSpec:
    """What one ``method.type`` is, as far as code outside its own module needs to know."""

    family: Family  # which builder in tuneforge.methods applies it
    summary: str  # one line for the recipe reference: what trains, when to use it
    options: tuple[str, ...] = ()  # the sub-sections of the recipe's `method` section it reads
    saves: Literal["adapter", "model"] = "adapter"  # run-directory entry: an adapter beside the base, or the whole model
    mergeable: bool = True  # the export can fold it into the base weights (or there is nothing to fold)
    prompt_learning: bool = False  # virtual tokens inside peft's own forward (no fast loss path, no packing)
    compiles: bool = True  # training.compile covers its forward (as measured, docs/SPEED.md)
    quantized_base: bool = False  # the frozen base is loaded 4-bit, never in full precision first
    needs_total_steps: bool = False  # its schedule needs the run's optimizer step count (AdaLoRA's rank budget)
    reward_model: bool = False  # objective.type reward can train it (objectives/reward.py)
    # method.lora options this type switches on, whatever the recipe says (rslora: use_rslora, ...)
    lora_preset: Mapping[str, object] = field(default_factory=lambda: MappingProxyType({}))
    loraplus_default_ratio: float | None = None  # LoRA+ ratio used when method.lora.loraplus_lr_ratio is unset


def _preset(**values: object) -> Mapping[str, object]:
    return MappingProxyType(values)


_LORA = ("lora",)
_PROMPT = {"family": "prompt", "mergeable": False, "prompt_learning": True, "compiles": False}
_WHOLE = {"saves": "model"}

METHOD_TABLE: Mapping[str, MethodSpec] = MappingProxyType({
    "full": MethodSpec("full", "every weight (best quality, most memory)", **_WHOLE, reward_model=True),
    "freeze": MethodSpec("freeze", "last N blocks + named modules (small data, close task)", ("freeze",), **_WHOLE, reward_model=True),
    "moe": MethodSpec("moe", "experts only, router frozen (MoE models)", ("moe",), **_WHOLE),
    "lora": MethodSpec("lora", "low-rank adapters, the default first choice", _LORA, reward_model=True),
    "rslora": MethodSpec("lora", "LoRA scaled by alpha/sqrt(r) (ranks >= 64)", _LORA, lora_preset=_preset(use_rslora=True)),
    "dora": MethodSpec("lora", "LoRA + learned magnitude (closer to full tuning at low rank)", _LORA, lora_preset=_preset(use_dora=True)),
    "pissa": MethodSpec("lora", "LoRA started from the top singular vectors (converges faster)", _LORA, lora_preset=_preset(init="pissa")),
    # the LoRA+ paper's recommended lr_B / lr_A for decoder LMs
    "loraplus": MethodSpec("lora", "LoRA with a higher LR for B (faster, same cost)", _LORA, loraplus_default_ratio=16.0),
    "qlora": MethodSpec("qlora", "LoRA on a 4-bit NF4 base (largest model per GB)", ("lora", "qlora"), compiles=False, quantized_base=True),
    "adalora": MethodSpec("adalora", "LoRA whose ranks are reallocated by importance (fixed budget)", ("adalora",), needs_total_steps=True),
    "vera": MethodSpec("peft_tuner", "shared frozen random matrices, two vectors per layer train (tiny adapters, many tasks)", ("vera",)),
    "ia3": MethodSpec("peft_tuner", "learned activation rescaling (fewest parameters, few-shot)", ("ia3",)),
    "loha": MethodSpec("peft_tuner", "Hadamard products of low-rank factors (more rank per parameter)", ("loha",)),
    "lokr": MethodSpec("peft_tuner", "Kronecker products of a small and a low-rank factor (more rank per parameter)", ("lokr",)),
    "oft": MethodSpec("peft_tuner", "orthogonal rotations of the weights (keeps pretrained knowledge, e.g. style)", ("oft",)),
    "prefix_tuning": MethodSpec(summary="learned key/values at every layer", options=("prefix",), **_PROMPT),
    "p_tuning_v2": MethodSpec(summary="prefix tuning through an MLP (more stable)", options=("prefix",), **_PROMPT),
    "prompt_tuning": MethodSpec(summary="learned input embeddings (large models, many tasks)", options=("prompt_tuning",), **_PROMPT),
    "p_tuning": MethodSpec(summary="virtual tokens from a prompt encoder (NLU-style tasks)", options=("p_tuning",), **_PROMPT),
    "bottleneck": MethodSpec(
        "bottleneck", "Houlsby adapters after attention and/or MLP (modular, not mergeable)", ("bottleneck",), mergeable=False
    ),
})  # fmt: skip

METHOD_TYPES: tuple[str, ...] = tuple(METHOD_TABLE)


def method_spec(method_type: str) -> MethodSpec:
    """The table entry of ``method_type`` (a KeyError means the schema was bypassed)."""
    return METHOD_TABLE[method_type]


def types_reading(options: str) -> tuple[str, ...]:
    """The method types that read the ``method.<options>`` sub-section, in table order."""
    return tuple(name for name, spec in METHOD_TABLE.items() if options in spec.options)


def types_where(flag: str, value: object = True) -> tuple[str, ...]:
    """The method types whose entry has ``flag`` equal to ``value``, in table order (for messages and docs)."""
    return tuple(name for name, spec in METHOD_TABLE.items() if getattr(spec, flag) == value)


def lora_options(method: MethodSection) -> LoraOptions:
    """``method.lora`` as the method trains it: with what ``method.type`` switches on (a copy).

    One place for this, so the LoRA builder, the speed plan (is it DoRA?) and ``advise`` (is it
    PiSSA?) agree whether the type or the option asked for a variant.
    """
    spec = method_spec(method.type)
    opts = method.lora.model_copy(update=dict(spec.lora_preset))
    if spec.loraplus_default_ratio is not None and opts.loraplus_lr_ratio is None:
        opts.loraplus_lr_ratio = spec.loraplus_default_ratio
    return opts


def uses_dora(method: MethodSection) -> bool:
    """True when the method trains DoRA layers (``method.type: dora``, or a LoRA type with ``lora.use_dora``)."""
    return "lora" in method_spec(method.type).options and lora_options(method).use_dora
