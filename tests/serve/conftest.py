"""A real ``tuneforge serve`` app on a tiny local model, under uvicorn on a free loopback port."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.tiny import tiny_llama, tiny_tokenizer

API_KEY = "test-key-123"


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """An untied random tiny Llama (a tied one greedily repeats its input, which proves little)."""
    path = tmp_path_factory.mktemp("tiny-serve-model")
    tok = tiny_tokenizer()
    tiny_llama(len(tok), tie=False, seed=1).save_pretrained(path)
    tok.save_pretrained(path)
    return path
