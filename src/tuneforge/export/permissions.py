"""Give exported files the permissions an ordinary ``mkdir`` / ``open`` would have given them.

Exports are written into a ``tempfile.mkdtemp`` / ``mkstemp`` location first and renamed into place,
so a crash never leaves half a model behind. Those functions create 0700 directories and 0600 files
on purpose (a temporary file should be private), and the rename keeps that mode: the export that
reaches the user would be unreadable to their group, their serving container's user, or an Ollama
daemon running as another account. Once the content is complete we reset the modes to what the
user's umask asks for: directories ``0o777 & ~umask``, files ``0o666 & ~umask``.
"""

from __future__ import annotations

import os
from pathlib import Path


def current_umask() -> int:
    """The process umask. POSIX only offers read-by-setting, so set it and put it straight back."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def ordinary_modes(path: str | Path) -> Path:
    """Reset ``path`` (a file, or a directory and everything under it) to umask-derived modes.

    Symlinks are left alone (their mode is not used on Linux and chmod would follow them).
    """
    root = Path(path)
    mask = current_umask()
    dir_mode, file_mode = 0o777 & ~mask, 0o666 & ~mask
    if root.is_symlink():
        return root
    if root.is_file():
        os.chmod(root, file_mode)
        return root
    for current, dirs, files in os.walk(root):
        os.chmod(current, dir_mode)
        for name in files:
            entry = Path(current, name)
            if not entry.is_symlink():
                os.chmod(entry, file_mode)
        dirs[:] = [d for d in dirs if not Path(current, d).is_symlink()]
    return root
