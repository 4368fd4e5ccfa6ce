"""Exports get the modes the user's umask asks for, not the 0700/0600 of their temporary files."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from tests.helpers.tiny import tiny_llama, tiny_tokenizer
from tuneforge.export.gguf import save_gguf
from tuneforge.export.merge import save_merged
from tuneforge.export.permissions import current_umask


@pytest.fixture(params=[0o022, 0o027])
def umask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_current_umask_reads_without_changing_it(umask: int) -> None:
    assert current_umask() == umask
    assert current_umask() == umask


def test_merged_export_has_umask_modes(tmp_path: Path, umask: int) -> None:
    tok = tiny_tokenizer()
    out = save_merged(tiny_llama(len(tok)), tok, tmp_path / "merged")
    assert _mode(out) == 0o777 & ~umask
    files = [p for p in out.rglob("*") if p.is_file()]
    assert any(p.name == "model.safetensors" for p in files)
    assert {_mode(p) for p in files} == {0o666 & ~umask}


def test_gguf_export_has_umask_mode(tmp_path: Path, umask: int) -> None:
    tok = tiny_tokenizer()
    out = save_gguf(tiny_llama(len(tok)), tok, tmp_path / "m.gguf")
    assert _mode(out) == 0o666 & ~umask
