"""Measure the real peak memory of a few training steps, to check the estimate against.

The steps run in a fresh Python process so its peak RSS belongs to that training alone (the peak of
a process never goes down, so measuring in the caller would report whatever the caller did before).
The child reports the RSS after its imports (the runtime: Python, torch, transformers, peft), then
the peak after ``steps`` optimizer steps of the real recipe (tuneforge.recipes.train), with evaluation and
validation switched off. Usage as a module:

    python -m tuneforge.advise.measure RECIPE_JSON STEPS OUT_DIR    (prints one JSON line)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from tuneforge.config.load import validate_recipe
from tuneforge.config.schema import Recipe
from tuneforge.errors import TuneforgeError
from tuneforge.observe.memory import peak_rss_mb
from tuneforge.recipes import train

MB = 1024 * 1024


@dataclass(frozen=True)
class Measured:
    runtime_mb: float  # RSS after imports, before the model loads
    peak_mb: float  # peak RSS of the whole process
    steps: int
    seconds: float
    tokens_per_s: float | None

    @property
    def training_mb(self) -> float:
        """Peak minus runtime: what the estimate's training tensors should match."""
        return self.peak_mb - self.runtime_mb


def measure_training_memory(
    recipe: Recipe, *, steps: int = 3, timeout_s: float = 900
) -> Measured:
    """Run ``steps`` real optimizer steps of ``recipe`` in a child process and return its memory figures."""
    with tempfile.TemporaryDirectory(prefix="tuneforge-measure-") as tmp:
        data = recipe.model_dump(mode="json")
        data["eval"]["data"] = None
        data["data"]["val_fraction"] = 0.0
        data["data"]["validation"] = None
        data["training"].update(
            max_steps=steps, logging_steps=1, early_stopping_patience=None
        )
        data["output"] = {"dir": str(Path(tmp) / "run"), "overwrite": True}
        spec = Path(tmp) / "recipe.json"
        spec.write_text(json.dumps(data))
        env = {**os.environ, "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1")}
        proc = subprocess.run(
            [sys.executable, "-m", "tuneforge.advise.measure", str(spec)],
            check=False, capture_output=True, text=True, timeout=timeout_s, env=env,
        )  # fmt: skip
        if proc.returncode != 0:
            tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
            raise TuneforgeError(
                f"the measured training run failed:\n{tail}",
                hint="check that `tuneforge train` runs this recipe",
            )
        result = json.loads(proc.stdout.strip().splitlines()[-1])
    return Measured(**result)


def high_water_mb() -> float:
    """Peak RSS of this process image; see :func:`tuneforge.observe.memory.peak_rss_mb`."""
    return peak_rss_mb()


def _child(spec_path: str) -> None:
    # everything this process imports is imported by now, so this is the runtime the estimate leaves out
    runtime_mb = high_water_mb()
    recipe = validate_recipe(json.loads(Path(spec_path).read_text()), source=spec_path)
    t0 = time.perf_counter()
    summary = train(recipe, console=Console(stderr=True, quiet=True)).summary
    peak_mb = high_water_mb()
    out = {
        "runtime_mb": round(runtime_mb, 1),
        "peak_mb": round(peak_mb, 1),
        "steps": summary["steps"],
        "seconds": round(time.perf_counter() - t0, 1),
        "tokens_per_s": summary.get("train_tokens_per_s"),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    _child(sys.argv[1])
