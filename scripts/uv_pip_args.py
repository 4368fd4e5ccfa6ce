"""Print, one per line, the `uv pip install` options that reproduce this machine's pip configuration.

scripts/setup.sh installs with uv where it can (about 10x faster than pip for tuneforge's ~110
dependencies; docs/SPEED.md), but uv does not read pip's configuration files or PIP_* variables.
Machines here point pip at local wheel folders, extra file indexes and a constraints file, so the
same settings are passed to uv explicitly: the set of packages installed stays what pip would choose.
Input: the output of `pip config list` on stdin (files and environment, later entries winning).
"""

from __future__ import annotations

import ast
import sys

# pip option -> uv option; the multi-valued ones are whitespace-separated lists in pip's config
OPTIONS = {
    "index-url": "--index-url",
    "extra-index-url": "--extra-index-url",
    "find-links": "--find-links",
    "constraint": "--constraint",
}


def settings(lines: list[str]) -> dict[str, str]:
    """The effective value of each pip option: environment entries win over files (pip's order)."""
    found: dict[str, tuple[int, str]] = {}
    for line in lines:
        name, sep, raw = line.strip().partition("=")
        if not sep:
            continue
        scope, _, key = name.rpartition(".")
        if key not in OPTIONS:
            continue
        rank = 2 if scope.startswith(":env:") else 1 if scope in ("global", "install") else 0
        if key not in found or rank >= found[key][0]:
            found[key] = (rank, ast.literal_eval(raw) if raw[:1] in "'\"" else raw)
    return {key: value for key, (_, value) in found.items()}


def uv_args(lines: list[str]) -> list[str]:
    args = ["--index-strategy", "unsafe-best-match"]  # pip's rule: the best version from any index
    for key, value in settings(lines).items():
        for item in value.split():
            args += [OPTIONS[key], item]
    return args


if __name__ == "__main__":
    print("\n".join(uv_args(sys.stdin.read().splitlines())))
