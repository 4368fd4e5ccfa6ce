"""What one server serves: a model and tokenizer, and the model names clients may ask for.

Several adapters on one base come from a bundle, or from ``--adapter NAME=RUN`` runs, which are
bundled into a temporary directory first so they go through the bundle's checks (same base model,
same tokenizer, one peft type) and its loader (the base loaded once, every adapter by name). A
request's ``model`` is only ever looked up in :attr:`ServedModels.names`; it never becomes a path, so
no request can make the server read outside the directories it was started with.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneforge.adapters.bundle import is_bundle_dir, load_bundle, parse_named_runs, write_bundle
from tuneforge.adapters.combine import select_adapter
from tuneforge.errors import TuneforgeError
from tuneforge.runs import ADAPTER_DIR, MODEL_DIR, RECIPE_FILE, LoadedRun
from tuneforge.targets import load_target

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


@dataclass
class ServedModels:
    model: Any
    tokenizer: Any
    names: dict[str, str | None]  # served name -> peft adapter to activate (None: the model as loaded)
    default: str

    @property
    def multi_adapter(self) -> bool:
        return any(a is not None for a in self.names.values())

    def activate(self, adapter: str) -> None:
        select_adapter(self.model, adapter)


def load_served(target: str | None, adapters: list[str] | None = None, *, name: str | None = None) -> ServedModels:
    """Load ``target`` (a run, a bundle or a model spec) or the ``adapters`` NAME=RUN specs."""
    if adapters:
        if target is not None:
            raise TuneforgeError(
                "pass either TARGET or --adapter NAME=RUN, not both",
                hint="--adapter builds a bundle from runs; to serve an existing bundle pass its directory as TARGET",
            )
        runs = parse_named_runs(adapters)
        for run in runs.values():
            require_safetensors(run / ADAPTER_DIR)
        bundle = Path(tempfile.mkdtemp(prefix="tuneforge-serve-")) / "bundle"
        write_bundle(runs, bundle)
        return _from_bundle(str(bundle))
    if target is None:
        raise TuneforgeError("nothing to serve", hint="pass a run directory, a bundle or a model, or --adapter NAME=RUN")
    if is_bundle_dir(target):
        return _from_bundle(target)
    p = Path(target)
    if (p / RECIPE_FILE).is_file():
        require_safetensors(p / (ADAPTER_DIR if (p / ADAPTER_DIR).is_dir() else MODEL_DIR))
    elif p.is_dir():
        require_safetensors(p)
    loaded = load_target(target)
    if isinstance(loaded, LoadedRun):
        served = name or loaded.path.resolve().name
        return ServedModels(loaded.model, loaded.tokenizer, {served: None}, served)
    model, tokenizer = loaded
    served = name or target
    return ServedModels(model, tokenizer, {served: None}, served)


def _from_bundle(path: str) -> ServedModels:
    loaded = load_bundle(path)
    names = {n: n for n in loaded.adapters}
    return ServedModels(loaded.model, loaded.tokenizer, names, loaded.adapter or next(iter(names)))


def require_safetensors(directory: Path) -> None:
    """Refuse a weights directory that holds pickled weights and no safetensors (pickles can run code)."""
    if not directory.is_dir():
        return
    files = [f.name for f in directory.iterdir() if f.is_file()]
    pickled = [f for f in files if f.endswith(PICKLE_SUFFIXES)]
    if pickled and not any(f.endswith(".safetensors") for f in files):
        raise TuneforgeError(
            f"{directory} holds pickled weights ({', '.join(sorted(pickled)[:3])}) and no .safetensors; "
            "tuneforge serve loads safetensors only, because unpickling a file can run arbitrary code",
            hint="convert the weights once in a trusted environment (model.save_pretrained(dir) writes safetensors)",
        )
