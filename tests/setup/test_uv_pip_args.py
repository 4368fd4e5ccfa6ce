"""scripts/uv_pip_args.py: pip's configuration turned into uv options, so uv installs what pip would."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "uv_pip_args.py"


def load():
    spec = importlib.util.spec_from_file_location("uv_pip_args", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# the shape of `pip config list` on the machines here: files first, then PIP_* variables
CONFIG = [
    ":env:.cert='/etc/ssl/certs/ca-certificates.crt'",
    ":env:.find-links='/opt/wheels'",
    "global.constraint='/etc/xdg/pip/constraints.txt'",
    "global.extra-index-url='file:///opt/pypi/simple file:///opt/pypi-more/simple'",
    "global.find-links='/elsewhere'",
    "user.index-url='https://mirror.example/simple'",
]


def test_each_pip_setting_becomes_its_uv_option():
    args = load().uv_args(CONFIG)
    pairs = list(zip(args[::2], args[1::2]))
    assert pairs[0] == ("--index-strategy", "unsafe-best-match")
    assert sorted(pairs[1:]) == sorted([
        ("--find-links", "/opt/wheels"),  # the environment wins over the file, as in pip
        ("--constraint", "/etc/xdg/pip/constraints.txt"),
        ("--extra-index-url", "file:///opt/pypi/simple"),
        ("--extra-index-url", "file:///opt/pypi-more/simple"),
        ("--index-url", "https://mirror.example/simple"),
    ])  # fmt: skip


def test_no_configuration_gives_only_the_index_strategy():
    assert load().uv_args([]) == ["--index-strategy", "unsafe-best-match"]
    assert load().uv_args(["global.cert='/x'", "not a setting"]) == ["--index-strategy", "unsafe-best-match"]


def test_this_machines_pip_configuration_parses():
    listed = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, check=True).stdout
    out = subprocess.run([sys.executable, str(SCRIPT)], input=listed, capture_output=True, text=True, check=True).stdout.split()
    assert out[:2] == ["--index-strategy", "unsafe-best-match"] and len(out) % 2 == 0
