"""Loading recipes: YAML file + dotted ``key.sub=value`` overrides -> a validated :class:`Recipe`.

Validation errors are turned into one :class:`ConfigError` that names every offending key path and
says what to write instead, so the user never sees a pydantic traceback.
"""

from __future__ import annotations

import difflib
import types
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from tuneforge.config.schema import Recipe
from tuneforge.errors import ConfigError


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``training.batch_size=4`` into (["training", "batch_size"], 4); values parse as YAML scalars."""
    if "=" not in text:
        raise ConfigError(
            f"override '{text}' has no '='",
            hint="write overrides as key.sub=value, e.g. training.learning_rate=1e-4",
        )
    key, raw = text.split("=", 1)
    parts = [p for p in key.strip().split(".")]
    if not key.strip() or any(not p for p in parts):
        raise ConfigError(f"override '{text}' has an empty key part", hint="e.g. method.lora.r=8")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"override '{text}': value is not valid YAML ({exc.problem})") from None
    return parts, value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Set each dotted key in a nested dict, creating sections as needed."""
    for text in overrides:
        parts, value = parse_override(text)
        node = data
        for i, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                where = ".".join(parts[: i + 1])
                raise ConfigError(f"override '{text}': '{where}' is a value, not a section")
            node = child
        node[parts[-1]] = value
    return data


def read_recipe_file(path: str | Path) -> dict[str, Any]:
    """Read a recipe YAML into a dict, with file-level errors that say what is wrong."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"recipe file not found: {p}", hint="pass the path to a .yaml recipe, e.g. examples/quickstart/recipe.yaml")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{p}:{mark.line + 1}" if mark is not None else str(p)
        raise ConfigError(f"{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: a recipe must be a mapping of sections (model, method, data, ...), got {type(data).__name__}")
    return data


def load_recipe(path: str | Path | None = None, overrides: list[str] | None = None, *, base: dict | None = None) -> Recipe:
    """Build a validated Recipe from a YAML file (or a dict) plus overrides."""
    data: dict[str, Any] = dict(base or {})
    source = "recipe"
    if path is not None:
        data = read_recipe_file(path)
        source = str(path)
    data = apply_overrides(data, overrides or [])
    return validate_recipe(data, source=source)


def validate_recipe(data: dict[str, Any], *, source: str = "recipe") -> Recipe:
    try:
        return Recipe.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{source} is not valid:\n" + format_validation_error(exc, Recipe)) from None


def format_validation_error(exc: ValidationError, root: type[BaseModel]) -> str:
    """One line per problem: the dotted key path, what is wrong, and a suggestion where we have one."""
    lines = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        key = ".".join(loc) if loc else "(recipe)"
        kind = err["type"]
        if kind == "extra_forbidden":
            known = _known_keys(root, loc[:-1])
            close = difflib.get_close_matches(loc[-1], known, n=1)
            tip = f"; did you mean '{'.'.join(loc[:-1] + [close[0]])}'?" if close else ""
            lines.append(f"  - {key}: unknown key{tip} (allowed here: {', '.join(sorted(known))})")
        elif kind == "missing":
            lines.append(f"  - {key}: required, but missing")
        elif kind == "value_error":
            msg = str(err.get("ctx", {}).get("error", err["msg"]))
            lines.append(f"  - {key}: {msg}")
        else:
            got = err.get("input")
            got_text = f" (got {got!r})" if not isinstance(got, dict) else ""
            lines.append(f"  - {key}: {err['msg']}{got_text}")
    return "\n".join(lines)


def _known_keys(model: type[BaseModel], loc: list[str]) -> list[str]:
    """Field names of the section at ``loc`` (for 'did you mean' suggestions).

    Follows the shapes pydantic puts in error locations: ``list[X]`` items (an index), optional and
    union sections, and tagged unions (the tag value, e.g. ``data.pipeline.0.dedup``).
    """
    current: Any = model
    for part in loc:
        current = _section_model(current, part)
        if current is None:
            return []
    return list(getattr(_section_model(current, None) or current, "model_fields", {}).keys())


def _section_model(annotation: Any, part: str | None) -> Any:
    """The model that error-location ``part`` selects inside ``annotation`` (``None``: unwrap only)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _section_model(typing.get_args(annotation)[0], part)
    if origin in (list, tuple, set, frozenset):
        item = typing.get_args(annotation)[0] if typing.get_args(annotation) else None
        return item if part is not None and part.isdigit() else None
    if origin in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        if part is None:
            return members[0] if len(members) == 1 else None
        for member in members:  # a tagged-union location names the tag value
            for field in getattr(member, "model_fields", {}).values():
                if part in typing.get_args(field.annotation) and typing.get_origin(field.annotation) is typing.Literal:
                    return member
        for member in members:
            inner = _section_model(member, part)
            if inner is not None:
                return inner
        return None
    if part is None:
        return annotation
    field = getattr(annotation, "model_fields", {}).get(part)
    return None if field is None else field.annotation


def dump_recipe(recipe: Recipe, path: Path) -> None:
    """Write the fully resolved recipe; it re-runs as is with ``tuneforge train``."""
    text = yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
    path.write_text("# Fully resolved recipe written by tuneforge; re-run with: tuneforge train " + str(path) + "\n" + text, encoding="utf-8")
