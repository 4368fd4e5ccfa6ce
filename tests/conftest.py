"""Shared fixtures: tiny offline models and tokenizers, and a saved tiny model directory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch

from tests.helpers.tiny import tiny_llama, tiny_tokenizer


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    """A recipe with ``training.threads`` sets torch's thread count for the whole process; put it back,
    since later tests compare results bit for bit against other processes (another count can change them)."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def tokenizer():
    return tiny_tokenizer()


@pytest.fixture
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny random Llama + ChatML tokenizer saved as a local HF directory."""
    path = tmp_path_factory.mktemp("tiny-model")
    tok = tiny_tokenizer()
    model = tiny_llama(len(tok))
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path
