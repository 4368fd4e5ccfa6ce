"""Loading recipes: YAML file + dotted ``key.sub=value`` overrides -> a validated :class:`Recipe`.

Validation errors are turned into one :class:`ConfigError` that names every offending key path and
says what to write instead, so the user never sees a pydantic traceback.
"""

from __future__ import annotations

import copy
import difflib
import reprlib
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
            f"override '{shown(text)}' has no '='",
            hint="write overrides as key.sub=value, e.g. training.learning_rate=1e-4",
        )
    key, raw = text.split("=", 1)
    parts = [p for p in key.strip().split(".")]
    if not key.strip() or any(not p for p in parts):
        raise ConfigError(f"override '{shown(text)}' has an empty key part", hint="e.g. method.lora.r=8")
    if _has_surrogates(key):  # lone surrogates (undecodable argv bytes): pydantic cannot even read such a key
        raise ConfigError(f"override '{shown(text)}': the key is not valid UTF-8 text")
    value = _yaml_value(raw, f"override '{shown(text)}'") if raw.strip() else ""
    return parts, value


def shown(text: str, limit: int = 120) -> str:
    """``text`` safe and short enough to print inside an error message.

    Lone surrogates (Python's stand-in for undecodable argv bytes) and control characters become
    escapes: echoing them raw makes the error printer itself raise UnicodeEncodeError, or garbles
    the terminal. A 5000-digit override is clipped so the message stays readable.
    """
    safe = "".join(c if c.isprintable() or c == " " else repr(c)[1:-1] for c in text)
    return safe if len(safe) <= limit else safe[: limit - 3] + "..."


def _has_surrogates(text: str) -> bool:
    return any("\ud800" <= c <= "\udfff" for c in text)


def _yaml_value(text: str, where: str, *, is_file: bool = False) -> Any:
    """``yaml.safe_load`` with every failure as a ConfigError that starts with ``where``.

    ``safe_load`` constructs no Python objects (``!!python/...`` tags are errors), but it raises more
    than YAMLError on bad input: ValueError for an integer over Python's 4300-digit limit, an
    impossible date (``2001-02-30``) or ``!!int abc``; AttributeError for ``!!timestamp x``;
    RecursionError for deeply nested flow collections. All of these are the user's input, not bugs.
    """
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f"{where}:{mark.line + 1}" if mark is not None and is_file else where  # file:line, copyable into an editor
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{at}: not valid YAML: {shown(str(problem), 300)}") from None
    except RecursionError:
        raise ConfigError(f"{where}: YAML nested too deeply to read") from None
    except (ValueError, TypeError, AttributeError, OverflowError) as exc:
        raise ConfigError(f"{where}: YAML value cannot be constructed: {shown(str(exc), 200)}") from None


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Set each dotted key in a nested dict, creating sections as needed."""
    for text in overrides:
        parts, value = parse_override(text)
        node = data
        for i, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                where = ".".join(parts[: i + 1])
                raise ConfigError(f"override '{shown(text)}': '{shown(where)}' is a value, not a section")
            node = child
        node[parts[-1]] = value
    return data


def read_recipe_file(path: str | Path) -> dict[str, Any]:
    """Read a recipe YAML into a dict, with file-level errors that say what is wrong."""
    p = Path(path)
    name = shown(str(p))
    hint = "pass the path to a .yaml recipe, e.g. examples/quickstart/recipe.yaml"
    if p.is_dir():
        raise ConfigError(f"recipe path is a directory, not a file: {name}", hint=hint)
    if not p.is_file():
        raise ConfigError(f"recipe file not found: {name}", hint=hint)
    try:
        text = p.read_bytes().decode("utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read recipe file {name}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{name}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start})", hint="save the recipe as UTF-8") from None
    data = _yaml_value(text, name, is_file=True)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{name}: a recipe must be a mapping of sections (model, method, data, ...), got {type(data).__name__}")
    return data


def load_recipe(path: str | Path | None = None, overrides: list[str] | None = None, *, base: dict | None = None) -> Recipe:
    """Build a validated Recipe from a YAML file (or a dict) plus overrides.

    ``base`` is deep-copied: overrides set keys inside nested sections, and writing into the caller's
    dict would leak one call's overrides into the next call that reuses the same base.
    """
    data: dict[str, Any] = copy.deepcopy(dict(base or {}))
    source = "recipe"
    if path is not None:
        data = read_recipe_file(path)
        source = shown(str(path))
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
        key = shown(".".join(loc), 200) if loc else "(recipe)"
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
            got_text = f" (got {_short_repr(got)})" if not isinstance(got, dict) else ""
            lines.append(f"  - {key}: {err['msg']}{got_text}")
    return "\n".join(lines)


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxlist, _REPR.maxdict, _REPR.maxstring, _REPR.maxother = 2, 5, 5, 80, 80


def _short_repr(value: Any) -> str:
    """A bounded repr of a bad input value.

    A plain repr can be huge (YAML aliases share lists, so a 9-level "billion laughs" document is
    small on disk but has 9**9 leaves when printed) or fail outright (``repr`` of an int over
    4300 digits raises ValueError).
    """
    try:
        return _REPR.repr(value)
    except ValueError:
        return f"<{type(value).__name__} too large to show>"


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
