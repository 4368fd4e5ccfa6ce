"""The layering of src/tuneforge, checked from the source: imports inside functions count too.

Layers, lowest first. A module may import from its own layer's package and from lower layers only,
so the arrows of docs/ARCHITECTURE.md's picture are true of the code and no import cycle between
subpackages can form. A function-level import is allowed only with a comment on its line or the
line above that starts with ``lazy:`` and gives the measured reason (start-up time, an optional
heavy dependency).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "tuneforge"

# Lowest first; names on one row are one layer and must not import each other.
LAYERS: list[tuple[str, ...]] = [
    ("errors",),
    ("user_code",),
    ("config",),
    ("data",),
    ("runs", "observe"),
    ("models",),
    ("methods",),
    ("objectives",),
    ("datatools",),
    ("train", "adapters"),
    ("targets",),
    ("evaluate", "export"),
    ("serve",),
    ("rewards",),
    ("recipes",),
    ("advise", "monitor", "sweep"),
    ("ui",),
    ("cli",),
]
RANK = {name: i for i, row in enumerate(LAYERS) for name in row}


def unit(path: Path) -> str:
    """The top-level subpackage or module a file belongs to (``train``, ``runs``, ...)."""
    return path.relative_to(SRC).parts[0].removesuffix(".py")


def imports(tree: ast.AST) -> list[tuple[ast.stmt, str]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node, node.module))
        elif isinstance(node, ast.Import):
            found += [(node, a.name) for a in node.names]
    return found


def source_files() -> list[Path]:
    return sorted(p for p in SRC.rglob("*.py") if p.name != "__init__.py" or p.parent != SRC)


def test_every_unit_has_a_layer():
    units = {unit(p) for p in source_files()} - {"__init__", "py"}
    assert units <= set(RANK), f"add these to LAYERS: {sorted(units - set(RANK))}"


def test_no_import_goes_up_or_sideways():
    wrong = []
    for path in source_files():
        me = unit(path)
        for node, module in imports(ast.parse(path.read_text())):
            parts = module.split(".")
            if parts[0] != "tuneforge" or len(parts) < 2 or parts[1] == me:
                continue
            if RANK[parts[1]] >= RANK[me]:
                wrong.append(f"{path.relative_to(SRC)}:{node.lineno} ({me}) imports {module}")
    assert not wrong, "imports against the layering:\n" + "\n".join(wrong)


def import_groups(fn: ast.AST) -> list[ast.stmt]:
    """The first statement of each run of consecutive import statements inside ``fn``."""
    firsts = []
    for node in ast.walk(fn):
        for name in ("body", "orelse", "finalbody", "handlers"):
            block = getattr(node, name, None)
            if not isinstance(block, list):
                continue
            previous_was_import = False
            for stmt in block:
                is_import = isinstance(stmt, (ast.Import, ast.ImportFrom))
                if is_import and not previous_was_import:
                    firsts.append(stmt)
                previous_was_import = is_import
    return firsts


def test_function_level_imports_say_why():
    unexplained = set()
    for path in source_files():
        lines = path.read_text().splitlines()
        for fn in ast.walk(ast.parse("\n".join(lines))):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for first in import_groups(fn):
                    here = lines[first.lineno - 1] + (lines[first.lineno - 2] if first.lineno > 1 else "")
                    if "lazy:" not in here:
                        unexplained.add(f"{path.relative_to(SRC)}:{first.lineno} in {fn.name}()")
    assert not unexplained, "function-level imports without a '# lazy: <measured reason>' comment:\n" + "\n".join(sorted(unexplained))


@pytest.mark.parametrize("limit", [100])
def test_no_function_is_longer_than(limit):
    long = []
    for path in source_files():
        for fn in ast.walk(ast.parse(path.read_text())):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)) and fn.end_lineno - fn.lineno + 1 > limit:
                long.append(f"{path.relative_to(SRC)}:{fn.lineno} {fn.name} ({fn.end_lineno - fn.lineno + 1} lines)")
    assert not long, "\n".join(long)
