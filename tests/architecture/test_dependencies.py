"""Dependencies declared in pyproject.toml are the third-party packages src/tuneforge imports, and no others."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# import name -> distribution name, where they differ
DISTRIBUTION = {"yaml": "pyyaml", "llama_cpp": "llama_cpp_python"}
# declared but never imported by us, each with the reason it is still needed
INDIRECT: dict[str, str] = {}
# imported only where they run: bitsandbytes for qlora (the `qlora` extra), llama.cpp's bindings for K-quant GGUF export (`llama`)
OPTIONAL = {"bitsandbytes", "llama_cpp_python", "lm_eval"}  # lm_eval: tuneforge eval --lm-eval (the `lmeval` extra)


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0].lower().replace("-", "_")


def imported() -> set[str]:
    names = set()
    for path in (ROOT / "src" / "tuneforge").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
    names -= set(sys.stdlib_module_names) | {"tuneforge"}
    return {DISTRIBUTION.get(n, n).lower().replace("-", "_") for n in names}


def test_declared_dependencies_are_the_imported_ones():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {_name(r) for r in project["dependencies"]}
    uses = imported()
    assert uses - OPTIONAL <= declared, f"imported but not declared: {sorted(uses - OPTIONAL - declared)}"
    assert declared - uses <= set(INDIRECT), f"declared but never imported: {sorted(declared - uses - set(INDIRECT))}"
    extras = {_name(r) for reqs in project["optional-dependencies"].values() for r in reqs}
    assert OPTIONAL <= extras
