"""A model's config without its weights, from any spec ``load_model`` accepts (``--dry-run``, ``advise``)."""

from __future__ import annotations

from typing import Any

from transformers import AutoConfig

from tuneforge.errors import TuneforgeError
from tuneforge.models.load import resolve_model


def load_config(spec: str) -> Any:
    """The model's ``PretrainedConfig``; reads config.json (or the GGUF header), never the weights."""
    source = resolve_model(spec)
    kwargs = {"gguf_file": source.gguf_file} if source.gguf_file else {}
    try:
        return AutoConfig.from_pretrained(source.path, **kwargs)
    except (OSError, ValueError) as exc:
        raise TuneforgeError(
            f"could not read the config of {spec}: {exc}",
            hint="pass a model tuneforge can load (see tuneforge train --help)",
        ) from exc
