"""The adapter bundle: several adapter runs trained on one base model, stored side by side.

```
BUNDLE/
  bundle.json           base model, tokenizer fingerprint, default adapter, adapters (name -> source run, method)
  adapters/<name>/      the run's adapter/ files (adapter_config.json + safetensors) and its recipe.yaml
  tokenizer files       the one tokenizer every adapter was trained with
```

Why a bundle checks so much before it writes anything: peft loads an adapter onto any base whose
module names and shapes match, so a LoRA trained on another checkpoint of the same architecture, or
with a tokenizer whose ids mean other tokens, loads silently and generates nonsense. Every run must
name the same base model and carry the same tokenizer (vocabulary, special tokens, chat template),
and every adapter must be of one peft type, because one peft model holds adapters of one tuner.

The adapter files are copied rather than referenced: a bundle is what gets shipped to a server, the
adapters are a few MB each, and a copy cannot change when a run directory is re-trained later.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from peft import PeftModel

from tuneforge.adapters.combine import WEIGHTED_ADAPTER, add_weighted, select_adapter
from tuneforge.config.load import load_recipe
from tuneforge.errors import TuneforgeError
from tuneforge.models.builtin import is_builtin
from tuneforge.models.load import load_model, load_tokenizer
from tuneforge.runs import ADAPTER_DIR, MODEL_DIR, RECIPE_FILE, LoadedRun

BUNDLE_FILE = "bundle.json"
ADAPTERS_DIR = "adapters"
BUNDLE_FORMAT = 1
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")
_ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


@dataclass
class BundleInfo:
    """What ``bundle.json`` holds: enough to load every adapter onto the right base without the runs."""

    path: Path
    base_model: str
    tokenizer_fingerprint: str
    default: str
    adapters: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        return list(self.adapters)

    def adapter_dir(self, name: str) -> Path:
        return self.path / ADAPTERS_DIR / name


def is_bundle_dir(path: str | Path) -> bool:
    return (Path(path) / BUNDLE_FILE).is_file()


def parse_named_runs(specs: list[str]) -> dict[str, Path]:
    """``["support=runs/a", "legal=runs/b"]`` -> ``{"support": Path("runs/a"), ...}``, with clear errors."""
    runs: dict[str, Path] = {}
    for spec in specs:
        name, sep, run = spec.partition("=")
        if not sep or not name or not run:
            raise TuneforgeError(
                f"{spec!r} is not NAME=RUN",
                hint="write each adapter as NAME=RUN_DIR, e.g. support=runs/support",
            )
        _check_name(name)
        if name in runs:
            raise TuneforgeError(
                f"adapter name {name!r} is given twice",
                hint="give every adapter its own name",
            )
        runs[name] = Path(run)
    if not runs:
        raise TuneforgeError(
            "no adapters given", hint="name at least one run: NAME=RUN_DIR"
        )
    return runs


def write_bundle(
    runs: dict[str, str | Path], out: str | Path, *, default: str | None = None
) -> BundleInfo:
    """Check that ``runs`` (name -> finished adapter run) share base, tokenizer and peft type; write ``out``.

    The directory is assembled in a temporary sibling and renamed into place, so a failed write never
    leaves a half bundle; an existing ``out`` is replaced only if it is itself a bundle.
    """
    default = _check_names(runs, default)
    out = Path(out)
    _check_target(out)
    entries, bases, fingerprints, first_tokenizer = _inspect_runs(runs)
    _check_same(
        "base model",
        bases,
        hint="train every adapter from the same model.name; adapters only fit the base they were trained on",
    )
    _check_same(
        "tokenizer",
        fingerprints,
        hint="a tokenizer with other ids or another chat template makes the adapters read different tokens; retrain with one tokenizer",
    )
    _check_same(
        "peft type",
        {n: str(e["peft_type"]) for n, e in entries.items()},
        hint="one peft model holds adapters of one kind; bundle LoRA runs with LoRA runs (rsLoRA, DoRA, PiSSA are LoRA), IA3 with IA3, ...",
    )
    info = BundleInfo(out, bases[default], fingerprints[default], default, entries)
    _write_atomically(out, lambda tmp: _fill_bundle(tmp, runs, info, first_tokenizer))
    return info


def _check_names(runs: dict[str, str | Path], default: str | None) -> str:
    """Validate the adapter names and return the default adapter's name."""
    if not runs:
        raise TuneforgeError(
            "no adapters given", hint="name at least one run: NAME=RUN_DIR"
        )
    for name in runs:
        _check_name(name)
    default = default or next(iter(runs))
    if default not in runs:
        raise TuneforgeError(
            f"--default {default!r} is not one of the adapters {list(runs)}",
            hint="name one of the bundled adapters",
        )
    return default


def _inspect_runs(
    runs: dict[str, str | Path],
) -> tuple[dict[str, dict[str, Any]], dict[str, str], dict[str, str], Any]:
    """Per run: its bundle.json entry, base model key and tokenizer fingerprint; and the first tokenizer."""
    entries: dict[str, dict[str, Any]] = {}
    bases: dict[str, str] = {}
    fingerprints: dict[str, str] = {}
    first_tokenizer = None
    for name, run in runs.items():
        run = Path(run)
        recipe, adapter_dir = _adapter_run(name, run)
        bases[name] = _base_key(recipe.model.name)
        tokenizer = _run_tokenizer(adapter_dir, recipe.model.name)
        fingerprints[name] = tokenizer_fingerprint(tokenizer)
        first_tokenizer = first_tokenizer or tokenizer
        config = json.loads(
            (adapter_dir / "adapter_config.json").read_text(encoding="utf-8")
        )
        if not isinstance(config.get("peft_type"), str):
            raise TuneforgeError(
                f"{name}={run}: the adapter is not a peft adapter (method {recipe.method.type}), "
                "so it cannot be loaded beside others",
                hint="bundle runs of peft methods (the LoRA family, IA3, VeRA, LoHa, LoKr, OFT, "
                "prompt methods); serve this run on its own",
            )
        entries[name] = {
            "source_run": str(run.resolve()),
            "method": recipe.method.type,
            "peft_type": config.get("peft_type"),
        }
    return entries, bases, fingerprints, first_tokenizer


def _fill_bundle(tmp: Path, runs: dict[str, str | Path], info: BundleInfo, tokenizer: Any) -> None:
    """Copy each run's adapter files and recipe, the tokenizer and bundle.json into ``tmp``."""
    for name, run in runs.items():
        target = tmp / ADAPTERS_DIR / name
        target.mkdir(parents=True)
        for f in (Path(run) / ADAPTER_DIR).iterdir():
            if f.is_file() and (
                f.name in _ADAPTER_FILES or f.name.endswith(".safetensors")
            ):
                shutil.copy2(f, target / f.name)
        shutil.copy2(Path(run) / RECIPE_FILE, target / RECIPE_FILE)
    tokenizer.save_pretrained(str(tmp))
    meta = {
        "format": BUNDLE_FORMAT,
        "written_by": "tuneforge",
        "base_model": info.base_model,
        "tokenizer_fingerprint": info.tokenizer_fingerprint,
        "default": info.default,
        "adapters": info.adapters,
    }
    (tmp / BUNDLE_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")


def _write_atomically(out: Path, fill) -> None:
    """Build the directory with ``fill(tmp)`` in a temporary sibling, then rename it over ``out``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        fill(tmp)
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            old.rmdir()
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def read_bundle(path: str | Path) -> BundleInfo:
    p = Path(path)
    meta_file = p / BUNDLE_FILE
    if not meta_file.is_file():
        raise TuneforgeError(
            f"{p} is not an adapter bundle (no {BUNDLE_FILE})",
            hint="write one with: tuneforge adapters bundle NAME=RUN ... -o DIR",
        )
    try:
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise TuneforgeError(
            f"{meta_file}: invalid JSON ({exc})",
            hint="re-create the bundle with tuneforge adapters bundle",
        ) from None
    if meta.get("format") != BUNDLE_FORMAT:
        raise TuneforgeError(
            f"{meta_file}: bundle format {meta.get('format')!r} is not {BUNDLE_FORMAT}",
            hint="re-create the bundle with this tuneforge",
        )
    info = BundleInfo(
        p,
        meta["base_model"],
        meta["tokenizer_fingerprint"],
        meta["default"],
        meta["adapters"],
    )
    for name in info.names:
        if not (info.adapter_dir(name) / "adapter_config.json").is_file():
            raise TuneforgeError(
                f"{p}: adapter {name!r} has no {ADAPTERS_DIR}/{name}/adapter_config.json",
                hint="re-create the bundle",
            )
    return info


def load_bundle(
    path: str | Path,
    *,
    adapter: str | None = None,
    weights: dict[str, float] | None = None,
    combination: str = "cat",
    dtype: torch.dtype | None = None,
) -> LoadedRun:
    """Load the base once and every adapter of the bundle onto it, by name; activate one or a weighted mix.

    ``adapter`` picks the active adapter (default: the bundle's default); ``weights`` instead builds the
    weighted combination (see :func:`tuneforge.adapters.combine.add_weighted`) and activates it. The
    returned run's recipe is the one the active adapter was trained with, so evaluation uses its
    max_length and metrics. Switch later with :func:`tuneforge.adapters.combine.select_adapter`.
    """
    info = read_bundle(path)
    if adapter is not None and weights:
        raise TuneforgeError(
            "choose one adapter (--adapter) or a weighted mix (--weights), not both"
        )
    if adapter is not None and adapter not in info.adapters:
        raise TuneforgeError(
            f"the bundle {info.path} has no adapter {adapter!r}",
            hint=f"choose one of: {', '.join(info.names)}",
        )
    tokenizer = load_tokenizer(str(info.path))
    if tokenizer_fingerprint(tokenizer) != info.tokenizer_fingerprint:
        raise TuneforgeError(
            f"{info.path}: the tokenizer files do not match bundle.json",
            hint="re-create the bundle; do not edit its files",
        )
    base = load_model(info.base_model, dtype=dtype or torch.float32)
    model = None
    for name in info.names:
        if model is None:
            model = PeftModel.from_pretrained(
                base, str(info.adapter_dir(name)), adapter_name=name
            )
        else:
            model.load_adapter(str(info.adapter_dir(name)), adapter_name=name)
    if weights:
        add_weighted(model, weights, combination=combination)
        active, recipe_of = WEIGHTED_ADAPTER, next(iter(weights))
    else:
        active = recipe_of = adapter or info.default
        select_adapter(model, active)
    model.eval()
    recipe = load_recipe(info.adapter_dir(recipe_of) / RECIPE_FILE)
    return LoadedRun(
        info.path, recipe, model, tokenizer, adapter=active, adapters=tuple(info.names)
    )


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """A hash of what decides which ids a text becomes: vocabulary, special tokens and chat template."""
    payload = {
        "vocab": sorted(tokenizer.get_vocab().items()),
        "special": sorted(str(t) for t in tokenizer.all_special_tokens),
        "chat_template": tokenizer.chat_template,
        "class": type(tokenizer).__name__,
    }
    return hashlib.sha256(
        json.dumps(payload, ensure_ascii=False, default=str).encode("utf-8")
    ).hexdigest()[:16]


def _check_name(name: str) -> None:
    if not _NAME.match(name):
        raise TuneforgeError(
            f"adapter name {name!r} is not allowed",
            hint="use a letter followed by letters, digits, '_' or '-' (at most 64 characters)",
        )


def _check_target(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise TuneforgeError(
            f"bundle target {out} exists and is not a directory",
            hint="choose another -o path",
        )
    if out.is_dir() and any(out.iterdir()) and not is_bundle_dir(out):
        raise TuneforgeError(
            f"bundle target {out} is not empty and is not an adapter bundle",
            hint="choose a new or empty -o directory",
        )


def _adapter_run(name: str, run: Path):
    """(recipe, adapter dir) of a finished adapter run, or an error that says what ``run`` is instead."""
    if not (run / RECIPE_FILE).is_file():
        raise TuneforgeError(
            f"{name}={run}: not a tuneforge run directory (no {RECIPE_FILE})",
            hint="pass the output.dir of a finished `tuneforge train`",
        )
    if (run / MODEL_DIR).is_dir() and not (run / ADAPTER_DIR).is_dir():
        raise TuneforgeError(
            f"{name}={run}: a full/freeze run holds a whole model, not an adapter, so it cannot share a base with others",
            hint="bundle adapter runs (method.type lora and the other peft methods); serve this run on its own",
        )
    adapter_dir = run / ADAPTER_DIR
    if not (adapter_dir / "adapter_config.json").is_file():
        raise TuneforgeError(
            f"{name}={run}: no {ADAPTER_DIR}/adapter_config.json (training did not finish, or not a peft adapter)",
            hint=f"finish it with: tuneforge train {run / RECIPE_FILE} --resume",
        )
    return load_recipe(run / RECIPE_FILE), adapter_dir


def _run_tokenizer(adapter_dir: Path, base_name: str) -> Any:
    if (adapter_dir / "tokenizer_config.json").is_file():
        return load_tokenizer(str(adapter_dir))
    return load_tokenizer(base_name)


def _base_key(name: str) -> str:
    """The base model as a comparable string: built-in names as is, local paths resolved, hub ids as is."""
    if is_builtin(name):
        return name
    p = Path(name).expanduser()
    return str(p.resolve()) if p.exists() else name


def _check_same(what: str, values: dict[str, str], *, hint: str) -> None:
    if len(set(values.values())) > 1:
        listing = "; ".join(f"{n}: {v}" for n, v in values.items())
        raise TuneforgeError(f"the runs do not share one {what} ({listing})", hint=hint)
