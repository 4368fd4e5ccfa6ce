"""Merge a trained adapter into its base model and save a standalone checkpoint.

A merged model is what most serving stacks (vLLM, llama.cpp after conversion, plain
``AutoModelForCausalLM.from_pretrained``) want: one set of weights, no peft at load time, no adapter
overhead per token. The merge itself is peft's ``merge_and_unload``; this module adds the parts a
user loses work to when they get them wrong: a clear error for adapters that cannot be merged,
safetensors only, the tokenizer and chat template saved beside the weights, and an atomic write
that never clobbers a directory we did not write, with ordinary (umask) permissions.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from peft import PeftModel, get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict
from transformers import AutoModelForCausalLM, PreTrainedModel

from tuneforge import __version__
from tuneforge.config.schema import MethodSection
from tuneforge.errors import TuneforgeError
from tuneforge.export.permissions import ordinary_modes
from tuneforge.methods import can_merge
from tuneforge.methods.bottleneck import has_bottleneck
from tuneforge.methods.qlora import is_quantized

# Written into every export so a later export may replace it without asking; a directory without it
# might hold someone's only copy of a model, so we refuse to touch it.
EXPORT_MARKER = "tuneforge-export.json"

# Files that would mean a pickle-based checkpoint slipped through. transformers 5 writes safetensors
# only, but we check rather than trust, because a .bin beside the .safetensors is ambiguous to loaders.
_PICKLE_WEIGHT_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")

_UNMERGED_HINT = (
    "serve or evaluate the adapter unmerged: load the base model and apply the adapter directory with "
    "peft.PeftModel.from_pretrained(base, adapter_dir) instead of exporting a merged model"
)


def merge_adapter(model: PreTrainedModel | PeftModel, method: MethodSection | None = None) -> PreTrainedModel:
    """Return a plain transformers model with the adapter folded into its weights.

    The merge happens in place (peft replaces the adapter layers with merged base layers), so the
    ``PeftModel`` passed in must not be used afterwards; copying first would double peak memory,
    which is what a laptop user cannot afford. A plain model is returned unchanged, so callers can
    export full fine-tunes and adapter runs through the same path. ``method`` (a run's recipe
    section, when there is one) is checked against the method table first; without it the model
    itself tells (an adapter bundle or a model spec has no recipe).
    """
    if method is not None:
        check_mergeable(method)
    if isinstance(model, PeftModel):
        _check_mergeable(model)
        peft_name = _method_name(model)
        if is_quantized(model):
            model = _onto_full_precision_base(model)
        try:
            merged = model.merge_and_unload()
        except (ValueError, NotImplementedError) as exc:
            # peft signals configurations it cannot merge (GPTQ bases, replicated layers, input-dependent
            # tuners) this way; the user can still use the adapter, just not as merged weights.
            raise TuneforgeError(
                f"cannot merge the {peft_name} adapter into the base model: {exc}",
                _UNMERGED_HINT,
            ) from exc
        return merged
    if has_bottleneck(model):
        raise TuneforgeError(
            "a bottleneck adapter cannot be merged into the base model: it adds a non-linear layer "
            "(down-project, activation, up-project), not a change to the weights",
            "serve or evaluate the run unmerged (tuneforge chat / eval take the run directory), or train a "
            "mergeable method such as lora",
        )
    if isinstance(model, PreTrainedModel):
        return model
    raise TypeError(
        f"merge_adapter expects a peft.PeftModel or transformers.PreTrainedModel, got {type(model).__name__}"
    )


def save_merged(
    model: PreTrainedModel | PeftModel,
    tokenizer: Any,
    out_dir: Path,
    *,
    dtype: torch.dtype | None = None,
    method: MethodSection | None = None,
) -> Path:
    """Merge, optionally cast, and save model + tokenizer to ``out_dir`` as a standalone checkpoint.

    Everything is written to a temporary sibling directory first and renamed into place, so a crash
    or a full disk leaves either the previous export or nothing, never a half-written model that
    loads with missing weights. ``dtype`` lets a user ship bf16/fp16 weights from an fp32 training run;
    the cast happens on the merged model, after the merge, so the adapter delta is added at full
    precision. ``method``: as for :func:`merge_adapter`. Returns ``out_dir``.
    """
    out_dir = Path(out_dir)
    _check_target(out_dir)
    merged = merge_adapter(model, method)
    if dtype is not None:
        merged = merged.to(dtype=dtype)

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        merged.save_pretrained(tmp_dir)
        tokenizer.save_pretrained(tmp_dir)
        _check_safetensors_only(tmp_dir)
        _write_marker(tmp_dir, merged, dtype)
        ordinary_modes(tmp_dir)  # mkdtemp made it 0700; the export is for other users and daemons too
        replace_dir(tmp_dir, out_dir)
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise
    return out_dir


def check_mergeable(method: MethodSection) -> None:
    """Refuse a method the method table marks unmergeable, before any weights are touched."""
    if not can_merge(method):
        raise TuneforgeError(
            f"a method.type '{method.type}' run cannot be merged into the base model: it adds learned virtual "
            "tokens or a non-linear layer, not a change to the weights",
            "serve or evaluate the run unmerged (tuneforge chat / eval take the run directory), or train a "
            "mergeable method such as lora (docs/METHODS.md)",
        )


def _check_mergeable(model: PeftModel) -> None:
    """Reject prompt-learning adapters up front: they add virtual tokens, not weight deltas."""
    config = model.active_peft_config
    if config.is_prompt_learning or not callable(
        getattr(model.base_model, "merge_and_unload", None)
    ):
        raise TuneforgeError(
            f"a {_method_name(model)} adapter cannot be merged into the base model: it adds learned "
            "virtual tokens or activations, not a change to the weights",
            _UNMERGED_HINT,
        )


def _onto_full_precision_base(model: PeftModel) -> PeftModel:
    """A QLoRA adapter, re-applied to the base model loaded in full precision.

    Merging into the 4-bit weights would re-quantise W + BA and lose most of the (small) update, and
    the result would need bitsandbytes to load. As in the QLoRA paper's deployment path, the adapter
    is merged into the unquantised base instead; the outputs then differ from the 4-bit model by the
    base's quantisation error only.
    """
    config = copy.deepcopy(model.active_peft_config)
    source = config.base_model_name_or_path or model.get_base_model().name_or_path
    try:
        base = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)
    except OSError as exc:
        raise TuneforgeError(
            f"cannot load the full-precision base {source!r} to merge the QLoRA adapter into: {exc}",
            _UNMERGED_HINT,
        ) from exc
    config.inference_mode = True
    restored = get_peft_model(base, config)
    set_peft_model_state_dict(restored, get_peft_model_state_dict(model))
    return restored.eval()


def _method_name(model: PeftModel) -> str:
    """The peft method as users know it, e.g. 'LORA', 'LORA (DoRA)', 'PREFIX_TUNING'."""
    config = model.active_peft_config
    peft_type = getattr(config.peft_type, "value", str(config.peft_type))
    if getattr(config, "use_dora", False):
        return f"{peft_type} (DoRA)"
    return str(peft_type)


def _check_target(out_dir: Path) -> None:
    """Refuse to overwrite anything that is not empty and not a previous tuneforge export."""
    if out_dir.exists() and not out_dir.is_dir():
        raise TuneforgeError(
            f"export target {out_dir} exists and is not a directory",
            "choose another output path",
        )
    if (
        out_dir.is_dir()
        and any(out_dir.iterdir())
        and not (out_dir / EXPORT_MARKER).is_file()
    ):
        raise TuneforgeError(
            f"export target {out_dir} is not empty and was not written by a tuneforge export",
            "choose a new or empty output directory, or delete this one yourself if its contents are not needed",
        )


def _check_safetensors_only(directory: Path) -> None:
    """Fail loudly rather than ship a pickle checkpoint (unsafe to load, ambiguous beside safetensors)."""
    pickles = sorted(
        p.name for p in directory.iterdir() if p.name.endswith(_PICKLE_WEIGHT_SUFFIXES)
    )
    if pickles:
        raise RuntimeError(
            f"save_pretrained wrote pickle weight files {pickles}; expected safetensors only"
        )
    if not any(p.name.endswith(".safetensors") for p in directory.iterdir()):
        raise RuntimeError(
            f"save_pretrained wrote no .safetensors file into {directory}"
        )


def _write_marker(
    directory: Path, model: PreTrainedModel, dtype: torch.dtype | None
) -> None:
    """Record that tuneforge wrote this directory, and how, so a re-export may replace it."""
    info = {
        "written_by": "tuneforge",
        "tuneforge_version": __version__,
        "kind": "merged-model",
        "model_class": type(model).__name__,
        "dtype": str(dtype or next(model.parameters()).dtype).removeprefix("torch."),
    }
    (directory / EXPORT_MARKER).write_text(
        json.dumps(info, indent=2) + "\n", encoding="utf-8"
    )


def replace_dir(new_dir: Path, out_dir: Path) -> None:
    """Move ``new_dir`` to ``out_dir``; an old export there is kept aside until the swap succeeded."""
    if not out_dir.exists():
        os.replace(new_dir, out_dir)
        return
    old_dir = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
    old_dir.rmdir()  # only the unique name is wanted; os.replace needs the target absent
    os.replace(out_dir, old_dir)
    try:
        os.replace(new_dir, out_dir)
    except BaseException:
        os.replace(old_dir, out_dir)
        raise
    shutil.rmtree(old_dir, ignore_errors=True)
