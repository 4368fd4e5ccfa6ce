"""The recipe form, generated from the pydantic schema the way docs/RECIPES.md is (config/reference.py).

Every scalar option of :class:`~tuneforge.config.schema.Recipe` (a string, number, flag, choice or
list of choices, optionally ``None``) becomes one :class:`FormField` with its dotted key, its default
and the field's own ``description`` as help text, so the form cannot drift from the schema. Options
with a structured value (``data.pipeline`` steps, ``objective.rewards``, ``data.replay``) have no
widget: they are edited in the recipe's YAML, which the form keeps and merges back (:func:`to_recipe_dict`).

No gradio here: this module turns widget values into a recipe dict and validation errors into
per-field messages, and is tested without a browser.
"""

from __future__ import annotations

import copy
import re
import types
import typing
from dataclasses import dataclass
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from tuneforge.config.load import format_validation_error
from tuneforge.config.schema import Recipe

# Sections shown open in the form; the rest start folded (they are many: one per method and RL objective).
OPEN_SECTIONS = ("model", "method", "data", "training", "output")


@dataclass(frozen=True)
class FormField:
    """One widget of the form: what the schema says about a scalar option."""

    key: str  # dotted recipe key, e.g. training.learning_rate
    kind: str  # choice | multichoice | bool | int | float | text
    default: Any
    help: str
    choices: tuple = ()
    optional: bool = False  # None is allowed (an empty widget means "not set")
    required: bool = False

    @property
    def section(self) -> str:
        """The dotted key of the section holding the field (``method.lora`` for ``method.lora.r``)."""
        return self.key.rpartition(".")[0]

    @property
    def name(self) -> str:
        return self.key.rpartition(".")[2]


def _unwrap_optional(annotation: Any) -> tuple[Any, bool]:
    """``X | None`` -> (X, True); anything else -> (annotation, False)."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(members) == 1 and len(members) < len(typing.get_args(annotation)):
            return members[0], True
    return annotation, False


def _kind(annotation: Any) -> tuple[str, tuple] | None:
    """The widget kind and choices for a field type, or None when it has no widget (structured value)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return "choice", typing.get_args(annotation)
    if origin is list:
        (item,) = typing.get_args(annotation) or (None,)
        if typing.get_origin(item) is typing.Literal:
            return "multichoice", typing.get_args(item)
        if item is str:
            return "multichoice", ()  # free values: a comma-separated text box
        return None
    kinds = {bool: "bool", int: "int", float: "float", str: "text"}
    return (kinds[annotation], ()) if annotation in kinds else None


def _default(field: Any) -> Any:
    if field.is_required():
        return None
    value = field.default_factory() if field.default_factory is not None else field.default
    return copy.deepcopy(value)


def form_fields(model: type[BaseModel] = Recipe, prefix: str = "") -> list[FormField]:
    """Every scalar option of ``model``, depth first, in schema order (as docs/RECIPES.md lists them)."""
    found: list[FormField] = []
    subs: list[tuple[type[BaseModel], str]] = []
    for name, field in model.model_fields.items():
        annotation, optional = _unwrap_optional(field.annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            if not optional:  # an optional sub-section (data.replay) is YAML-only: None vs set matters
                subs.append((annotation, f"{prefix}{name}."))
            continue
        kind = _kind(annotation)
        if kind is None:
            continue
        found.append(
            FormField(
                key=f"{prefix}{name}",
                kind=kind[0],
                default=_default(field),
                help=field.description or "",
                choices=kind[1],
                optional=optional,
                required=field.is_required(),
            )
        )
    for sub, path in subs:
        found.extend(form_fields(sub, path))
    return found


def choice_label(value: Any) -> str:
    """How a choice shows in a dropdown: as YAML writes it (``true``, ``auto``), so labels read like a recipe."""
    return value if isinstance(value, str) else yaml.safe_dump(value).strip().removesuffix("...").strip()


def widget_value(field: FormField, value: Any) -> Any:
    """A recipe value as its widget holds it (choices as labels, free lists as comma-separated text)."""
    if field.kind == "choice":
        return choice_label(value)
    if field.kind == "multichoice":
        values = list(value or [])
        return [choice_label(v) for v in values] if field.choices else ", ".join(str(v) for v in values)
    if field.kind == "text" or (field.kind in ("int", "float") and field.optional):
        return "" if value is None else str(value)  # an optional number is a text box: empty means not set
    return value


def _whole(value: float) -> int | float:
    return int(value) if value.is_integer() else value


def recipe_value(field: FormField, value: Any) -> Any:
    """A widget's value back as the recipe value (the inverse of :func:`widget_value`)."""
    if field.kind == "choice":
        by_label = {choice_label(c): c for c in field.choices}
        return by_label.get(value, value)
    if field.kind == "multichoice":
        if field.choices:
            by_label = {choice_label(c): c for c in field.choices}
            items = [by_label.get(v, v) for v in value or []]
        else:
            items = [part.strip() for part in str(value or "").split(",") if part.strip()]
        return None if field.optional and not items else items
    if field.kind == "text":
        text = "" if value is None else str(value)
        return None if field.optional and not text.strip() else text
    if field.kind in ("int", "float") and isinstance(value, str):
        text = value.strip()
        if not text:
            return None if field.optional else text
        for parse in (int, float):  # "8", "1e-4" (YAML would read "1e-4" as a string)
            try:
                return parse(text) if parse is int or field.kind == "float" else _whole(float(text))
            except ValueError:
                continue
        return text  # not a number: validation names the field and what it expected
    if field.kind == "int" and isinstance(value, float):
        return int(value) if value.is_integer() else value  # a fraction stays, for validation to name
    return value


def _get(data: dict, key: str) -> tuple[bool, Any]:
    node: Any = data
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node


def _set(data: dict, key: str, value: Any) -> None:
    *parents, last = key.split(".")
    node = data
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value


def _prune(data: dict) -> dict:
    """Drop sections left empty, so the YAML shows only what differs from the defaults."""
    out = {}
    for key, value in data.items():
        if isinstance(value, dict):
            value = _prune(value)
            if not value:
                continue
        out[key] = value
    return out


def to_recipe_dict(fields: list[FormField], values: list[Any], extra: dict | None = None) -> dict:
    """The recipe the form describes: the values that differ from the schema's defaults, plus ``extra``.

    ``extra`` is the YAML-only part of a loaded recipe (pipeline steps, rewards, ...); form values
    win over it for the keys the form has. A required key (``data.train``) is always written.
    """
    data = copy.deepcopy(extra or {})
    for field, raw in zip(fields, values, strict=True):
        value = recipe_value(field, raw)
        if field.required or value != field.default:
            _set(data, field.key, value)
        else:
            present, _ = _get(data, field.key)
            if present:  # the form set it back to the default: the default is what to write
                _set(data, field.key, value)
    return _prune(data)


def from_recipe_dict(fields: list[FormField], data: dict) -> tuple[list[Any], dict]:
    """Widget values for a recipe dict (schema defaults where it is silent) and its YAML-only rest."""
    values = []
    for field in fields:
        present, value = _get(data, field.key)
        values.append(widget_value(field, value if present else field.default))
    extra = copy.deepcopy(data)
    for field in fields:
        *parents, last = field.key.split(".")
        node: Any = extra
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(last, None)
    return values, _prune(extra)


def recipe_yaml(data: dict) -> str:
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True) if data else "{}\n"


def field_errors(fields: list[FormField], data: dict) -> tuple[dict[str, str], list[str]]:
    """Validate ``data`` as a recipe: messages keyed by the form field they belong to, and the rest.

    A cross-section rule (a model validator) has no location; its message names the keys involved
    (``objective.type 'sft' needs ... data.format``), so it is shown on the first form key it names.
    """
    try:
        Recipe.model_validate(data)
    except ValidationError as exc:
        keys = {f.key for f in fields}
        on_field: dict[str, str] = {}
        general: list[str] = []
        for err, line in zip(exc.errors(), format_validation_error(exc, Recipe).splitlines(), strict=False):
            key = ".".join(str(p) for p in err["loc"])
            if key not in keys:  # a missing section: its required field; a model rule: the first key it names
                inside = [f.key for f in fields if f.required and f.key.startswith(key + ".")] if key else []
                named = inside or [k for k in re.findall(r"[a-z_]+(?:\.[a-z_0-9]+)+", line) if k in keys]
                key = named[0] if named else key
            message = line.strip().removeprefix("- ")
            if key in keys:
                on_field[key] = (on_field[key] + "; " if key in on_field else "") + message
            else:
                general.append(message)
        return on_field, general
    return {}, []
