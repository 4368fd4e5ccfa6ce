"""Markdown reference of every recipe option, generated from the schema so docs cannot drift."""

from __future__ import annotations

import json
import typing

from pydantic import BaseModel

from tuneforge.config.schema import Recipe


def _type_name(annotation) -> str:
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return " \\| ".join(f"`{a}`" for a in typing.get_args(annotation))
    text = getattr(annotation, "__name__", None) or str(annotation)
    return text.replace("typing.", "").replace("|", "\\|")


def _default(field) -> str:
    if field.is_required():
        return "**required**"
    value = field.default_factory() if field.default_factory is not None else field.default
    if isinstance(value, BaseModel):
        return ""
    return f"`{json.dumps(value)}`"


def recipe_reference() -> str:
    lines = [
        "# Recipe reference",
        "",
        "Generated from `src/tuneforge/config/schema.py` by `python -m tuneforge.config.reference > docs/RECIPES.md`;",
        "a test fails when this file is out of date. Any key can be overridden on the command line:",
        "`tuneforge train recipe.yaml training.epochs=1 method.lora.r=8`.",
        "",
    ]

    def section(model: type[BaseModel], prefix: str) -> None:
        rows, subs = [], []
        for name, field in model.model_fields.items():
            ann = field.annotation
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                subs.append((ann, f"{prefix}{name}"))
                continue
            rows.append(f"| `{prefix}{name}` | {_type_name(ann)} | {_default(field)} | {field.description or ''} |")
        if rows:
            lines.extend([f"## `{prefix.rstrip('.')}`", "", "| key | type | default | meaning |", "| --- | --- | --- | --- |", *rows, ""])
        for sub, path in subs:
            section(sub, path + ".")

    section(Recipe, "")
    return "\n".join(lines)


if __name__ == "__main__":
    print(recipe_reference())
