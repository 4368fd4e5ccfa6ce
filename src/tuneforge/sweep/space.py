"""The search space of ``tuneforge sweep``: a YAML map from a recipe's dotted key to a distribution.

```yaml
training.learning_rate: {low: 1.0e-5, high: 1.0e-3, log: true}   # float range
method.lora.r: {choices: [8, 16, 32]}                              # categorical
training.grad_accum: {low: 1, high: 4, step: 1, int: true}         # integer range
```

Every key is checked against the recipe before the first trial (the value Optuna would suggest must
be a valid override), so a typo fails in a second, not after an hour of trials.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tuneforge.config.load import load_recipe
from tuneforge.errors import ConfigError


@dataclass(frozen=True)
class Dimension:
    """One searched key: a categorical list, or a float/int range (log-uniform when ``log``)."""

    key: str
    choices: tuple[Any, ...] | None = None
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    integer: bool = False

    def suggest(self, trial) -> Any:
        """The value Optuna's ``trial`` picks for this key (its public suggest_* API)."""
        if self.choices is not None:
            return trial.suggest_categorical(self.key, list(self.choices))
        if self.integer:
            return trial.suggest_int(self.key, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.key, self.low, self.high, step=self.step, log=self.log)

    def example(self) -> Any:
        return self.choices[0] if self.choices is not None else (int(self.low) if self.integer else self.low)


def _dimension(key: str, spec: Any, where: str) -> Dimension:
    if not isinstance(spec, dict):
        raise ConfigError(f"{where}: {key} must be a map such as {{low: 1e-5, high: 1e-3, log: true}} or {{choices: [8, 16]}}")
    unknown = set(spec) - {"choices", "low", "high", "log", "step", "int"}
    if unknown:
        raise ConfigError(f"{where}: {key} has unknown option(s) {sorted(unknown)}", hint="use choices, or low/high with log, step, int")
    if "choices" in spec:
        if not isinstance(spec["choices"], list) or not spec["choices"]:
            raise ConfigError(f"{where}: {key}.choices must be a non-empty list")
        return Dimension(key, choices=tuple(spec["choices"]))
    low, high = spec.get("low"), spec.get("high")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high)) or low >= high:
        raise ConfigError(f"{where}: {key} needs numbers low < high (got low={low!r}, high={high!r})")
    if spec.get("log") and low <= 0:
        raise ConfigError(f"{where}: {key} has log: true, which needs low > 0")
    return Dimension(key, low=float(low), high=float(high), log=bool(spec.get("log", False)), step=spec.get("step"), integer=bool(spec.get("int", False)))


def load_space(path: str | Path, recipe_path: str | Path, overrides: list[str]) -> list[Dimension]:
    """Read the space file and check that each key takes its example value as a recipe override."""
    where = str(path)
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read the search space ({exc.strerror or exc})") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: invalid YAML ({str(exc).splitlines()[0]})") from exc
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(f"{where}: the search space must be a non-empty map of recipe keys", hint="e.g. training.learning_rate: {low: 1e-5, high: 1e-3, log: true}")
    space = [_dimension(str(key), spec, where) for key, spec in raw.items()]
    for dim in space:
        try:
            load_recipe(recipe_path, [*overrides, f"{dim.key}={dim.example()}"])
        except ConfigError as exc:
            raise ConfigError(f"{where}: {dim.key} is not a key this recipe takes ({exc})") from exc
    return space
