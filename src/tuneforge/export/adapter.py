"""A run's adapter as a plain PEFT directory: what ``peft.PeftModel.from_pretrained(base, DIR)`` loads.

A LoRA-family (and IA3, prompt-learning, ...) run already saves ``adapter/`` with peft's own
``save_pretrained`` (safetensors): ``adapter_config.json`` + ``adapter_model.safetensors``, plus the
tokenizer. ``--adapter-dir`` copies exactly that out of the run, so a user (or a serving stack such
as vLLM's LoRA support) gets the adapter without the run's checkpoints, logs and eval reports, and
checks on the way that it *is* plain peft: a bottleneck run's adapter is tuneforge's own format (peft
has no such tuner) and a full/freeze run has no adapter at all; both are refused with what to do
instead. A PiSSA run's adapter was already converted at save time to a plain LoRA on the untouched
base (methods/__init__.py), so it needs nothing here.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from tuneforge import __version__
from tuneforge.config.load import load_recipe
from tuneforge.errors import TuneforgeError
from tuneforge.export.merge import EXPORT_MARKER, replace_dir
from tuneforge.export.permissions import ordinary_modes
from tuneforge.runs import ADAPTER_DIR, MODEL_DIR, RECIPE_FILE

PEFT_CONFIG = "adapter_config.json"


def save_adapter_dir(run_dir: str | Path, out_dir: str | Path) -> Path:
    """Copy the plain-PEFT adapter (and tokenizer) of a finished run to ``out_dir``; returns it."""
    run, out = Path(run_dir), Path(out_dir)
    source = _peft_adapter(run)
    _check_target(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        for entry in source.iterdir():
            if entry.is_file():
                shutil.copy2(entry, tmp / entry.name)
        info = {
            "written_by": "tuneforge",
            "tuneforge_version": __version__,
            "kind": "peft-adapter",
            "run": str(run.resolve()),
            "base_model": load_recipe(run / RECIPE_FILE).model.name,
        }
        (tmp / EXPORT_MARKER).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        ordinary_modes(tmp)
        replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _peft_adapter(run: Path) -> Path:
    """The run's ``adapter/`` if it is a peft adapter; a clear refusal otherwise."""
    if not (run / RECIPE_FILE).is_file():
        raise TuneforgeError(
            f"{run} is not a tuneforge run directory (no {RECIPE_FILE})",
            "pass the output.dir of a finished `tuneforge train`",
        )
    adapter = run / ADAPTER_DIR
    if not adapter.is_dir():
        if (run / MODEL_DIR).is_dir():
            raise TuneforgeError(
                f"{run} trained the whole model ({MODEL_DIR}/), so it has no adapter to export",
                f"its {run / MODEL_DIR} already loads with transformers; or export it with --merge DIR / --gguf FILE",
            )
        raise TuneforgeError(
            f"{run} has no {ADAPTER_DIR}/: training did not finish",
            f"resume it with: tuneforge train {run / RECIPE_FILE} --resume",
        )
    if not (adapter / PEFT_CONFIG).is_file():
        raise TuneforgeError(
            f"{adapter} is not a peft adapter (no {PEFT_CONFIG}); a bottleneck adapter is tuneforge's own format",
            "peft cannot load it: serve it with tuneforge chat / eval (they take the run directory), "
            "or train a peft method such as lora",
        )
    return adapter


def _check_target(out: Path) -> None:
    """Replace only an empty directory or a previous tuneforge export."""
    if out.exists() and not out.is_dir():
        raise TuneforgeError(f"--adapter-dir target {out} exists and is not a directory", "choose another path")
    if out.is_dir() and any(out.iterdir()) and not (out / EXPORT_MARKER).is_file():
        raise TuneforgeError(
            f"export target {out} is not empty and was not written by a tuneforge export",
            "choose a new or empty output directory, or delete this one yourself if its contents are not needed",
        )
