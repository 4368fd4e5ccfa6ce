"""The Recipe tab: a form generated from the schema (ui/form.py), the equivalent YAML and command,
field errors, load/save, the bundled example recipes, the rank advisor and the dry run.

The YAML box is the recipe: it shows only what differs from the defaults plus ``data.train``, and
can be edited and applied back to the form (that is how the structured options without a widget,
``data.pipeline`` or ``objective.rewards``, are set).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr
import yaml

from tuneforge.advise import advise, render
from tuneforge.config.load import read_recipe_file, validate_recipe
from tuneforge.errors import TuneforgeError
from tuneforge.recipes import dry_run
from tuneforge.ui.data_tab import error_text
from tuneforge.ui.form import OPEN_SECTIONS, FormField, choice_label, field_errors, form_fields, from_recipe_dict, recipe_yaml, to_recipe_dict
from tuneforge.ui.process import shown_command

FIELDS: list[FormField] = form_fields()
EXAMPLES_DIR = Path("examples")  # the bundled recipes, when the UI runs from the repository root (as the examples say)


def example_recipes(root: Path = EXAMPLES_DIR) -> list[str]:
    """The bundled recipes under ``root`` (``examples/*/*.yaml`` that are recipes), quickstart first.

    A user who has never written a recipe starts from one of these: picking it fills the form. Files
    that are not recipes (a staged pipeline) are left out by reading each as a recipe.
    """
    found = []
    for path in sorted(root.glob("*/*.yaml")) if root.is_dir() else []:
        try:
            validate_recipe(read_recipe_file(path), source=str(path))
        except TuneforgeError:
            continue
        found.append(str(path))
    return sorted(found, key=lambda p: (Path(p).parent.name != "quickstart", p))


def elem_id(field: FormField) -> str:
    return "f-" + field.key.replace(".", "-")


def _widget(field: FormField, value: Any) -> gr.components.Component:
    """The gradio input for one option, labelled with its dotted key and the schema's help as ``info``."""
    common = {"label": field.key, "info": field.help, "elem_id": elem_id(field)}
    if field.kind == "choice":
        return gr.Dropdown([choice_label(c) for c in field.choices], value=value, **common)
    if field.kind == "multichoice" and field.choices:
        return gr.Dropdown([choice_label(c) for c in field.choices], value=value, multiselect=True, **common)
    if field.kind == "bool":
        return gr.Checkbox(value=bool(value), **common)
    if field.kind in ("int", "float") and not field.optional:
        return gr.Number(value=value, precision=0 if field.kind == "int" else None, **common)
    placeholder = "comma-separated" if field.kind == "multichoice" else ("empty = not set" if field.optional else None)
    # an optional number is a text box too: gradio's number box sends 0 for an empty one, never None
    return gr.Textbox(value=value, placeholder=placeholder, **common)


def build_form(initial: dict) -> list[gr.components.Component]:
    """One widget per option, in folded sections: the main sections open, sub-sections folded."""
    values, _ = from_recipe_dict(FIELDS, initial)
    by_field = dict(zip((f.key for f in FIELDS), values, strict=True))
    widgets: dict[str, gr.components.Component] = {}
    tops = list(dict.fromkeys(f.key.split(".")[0] for f in FIELDS))
    for top in tops:
        with gr.Accordion(top, open=top in OPEN_SECTIONS):
            for field in (f for f in FIELDS if f.section == top):
                widgets[field.key] = _widget(field, by_field[field.key])
            subs = list(dict.fromkeys(f.section for f in FIELDS if f.section.startswith(top + ".")))
            for sub in subs:
                with gr.Accordion(sub, open=False):
                    for field in (f for f in FIELDS if f.section == sub):
                        widgets[field.key] = _widget(field, by_field[field.key])
    return [widgets[f.key] for f in FIELDS]


def check(values: list[Any], extra: dict, path: str) -> tuple[str, str, str, list[str]]:
    """YAML, command, general errors and one ``info`` text per field (its error, else its help)."""
    data = to_recipe_dict(FIELDS, values, extra)
    on_field, general = field_errors(FIELDS, data)
    infos = [f"⚠ {on_field[f.key]}" if f.key in on_field else f.help for f in FIELDS]
    problems = general + list(on_field.values())
    status = "✅ valid recipe" if not problems else "❌ " + "\n\n❌ ".join(problems)
    command = f"`{shown_command(['train', path or 'recipe.yaml'])}`"
    return recipe_yaml(data), command, status, infos


def load_yaml_text(text: str) -> tuple[list[Any], dict]:
    """Form values and YAML-only rest for a recipe's YAML text (the form's Apply and Load)."""
    try:
        data = yaml.safe_load(text or "") or {}
    except yaml.YAMLError as exc:
        raise TuneforgeError(f"the recipe YAML does not parse: {exc}") from None
    if not isinstance(data, dict):
        raise TuneforgeError("a recipe is a mapping of sections (model, method, data, ...)")
    return from_recipe_dict(FIELDS, data)


def load_file(path: str) -> tuple[list[Any], dict]:
    """Form values for a recipe file, read the way ``tuneforge train`` reads it."""
    return from_recipe_dict(FIELDS, read_recipe_file(path))


def save_file(values: list[Any], extra: dict, path: str) -> str:
    """Write the form's recipe to ``path`` (only a valid one: a saved recipe must train)."""
    data = to_recipe_dict(FIELDS, values, extra)
    validate_recipe(data, source="the form's recipe")
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(recipe_yaml(data), encoding="utf-8")
    return f"saved `{target}`; train it with `{shown_command(['train', str(target)])}`"


def advise_text(values: list[Any], extra: dict) -> str:
    """``tuneforge advise`` for the form's recipe: data size, the LoRA rank suggestion and memory per method."""
    try:
        recipe = validate_recipe(to_recipe_dict(FIELDS, values, extra), source="the form's recipe")
        text = render(advise(recipe))
    except TuneforgeError as exc:
        return error_text(exc)
    return f"```\n{text}\n```"


def dry_run_text(values: list[Any], extra: dict) -> str:
    """``tuneforge train RECIPE --dry-run``: the data checked row by row and the speed plan, no weights loaded."""
    try:
        recipe = validate_recipe(to_recipe_dict(FIELDS, values, extra), source="the form's recipe")
        lines = dry_run(recipe).lines()
    except TuneforgeError as exc:
        return error_text(exc)
    return "```\n" + "\n".join(lines) + "\n```\nok: ready to train"


def build(workdir: Path, initial: dict) -> dict[str, Any]:
    """The tab; returns the form widgets, the YAML-only state and the recipe path for the Train tab."""
    extra = gr.State(from_recipe_dict(FIELDS, initial)[1])
    with gr.Row():
        path = gr.Textbox(str(workdir / "recipe.yaml"), label="Recipe file", info="Load reads it, Save writes it; the command below trains it.", elem_id="recipe-path", scale=3)
        load_btn = gr.Button("Load", elem_id="recipe-load", scale=1)
        save_btn = gr.Button("Save", elem_id="recipe-save", scale=1)
    examples = example_recipes()
    example = gr.Dropdown(
        examples, value=None, label="Start from an example",
        info="A bundled recipe, loaded into the form (the quickstart teaches the built-in model to turn support tickets "
        "into JSON in a few minutes on a laptop CPU). Save writes your copy to the recipe file above.",
        elem_id="recipe-example", visible=bool(examples),
    )  # fmt: skip
    message = gr.Markdown(elem_id="recipe-message")
    with gr.Row():
        with gr.Column(scale=3):
            widgets = build_form(initial)
        with gr.Column(scale=2):
            status = gr.Markdown(elem_id="recipe-status")
            command = gr.Markdown(elem_id="recipe-command")
            yaml_box = gr.Code(recipe_yaml(initial), language="yaml", label="Equivalent recipe YAML (editable: Apply puts it in the form)", interactive=True, elem_id="recipe-yaml")
            apply_btn = gr.Button("Apply YAML to the form", elem_id="recipe-apply")
            with gr.Row():
                advise_btn = gr.Button("Advise (rank + memory)", elem_id="recipe-advise")
                dry_btn = gr.Button("Dry run", elem_id="recipe-dry-run")
            advice = gr.Markdown(elem_id="recipe-advice")
    n = len(FIELDS)

    shown = gr.State([f.help for f in FIELDS])  # the info texts on the page: only changed ones are sent

    def refresh(*args):
        values, extra_value, path_value, before = list(args[:n]), args[n], args[n + 1], args[n + 2]
        text, cmd, state, infos = check(values, extra_value, path_value)
        changed = [gr.skip() if old == new else gr.update(info=new) for old, new in zip(before, infos, strict=True)]
        return [text, cmd, state, infos, *changed]

    def loaded(values, extra_value, note):
        return [note, extra_value, *values]

    def on_load(path_value):
        try:
            values, rest = load_file(path_value)
        except TuneforgeError as exc:
            return [error_text(exc), gr.skip(), *(gr.skip() for _ in FIELDS)]
        return loaded(values, rest, f"loaded `{path_value}`")

    def on_apply(text):
        try:
            values, rest = load_yaml_text(text)
        except TuneforgeError as exc:
            return [error_text(exc), gr.skip(), *(gr.skip() for _ in FIELDS)]
        return loaded(values, rest, "applied the YAML to the form")

    def on_save(*args):
        try:
            return save_file(list(args[:n]), args[n], args[n + 1])
        except TuneforgeError as exc:
            return error_text(exc)

    inputs = [*widgets, extra, path, shown]
    outputs = [yaml_box, command, status, shown, *widgets]
    # input: each edit; blur: a number box, whose edits reach the server when it loses focus
    triggers = [w.input for w in widgets] + [w.blur for w in widgets if isinstance(w, gr.Number)] + [path.input]
    # queue=False: answered on the request itself, not behind a training tick or a chat in the queue
    gr.on(triggers, refresh, inputs, outputs, trigger_mode="always_last", show_progress="hidden", queue=False)
    load_btn.click(on_load, path, [message, extra, *widgets]).then(refresh, inputs, outputs)
    example.input(on_load, example, [message, extra, *widgets]).then(refresh, inputs, outputs)
    apply_btn.click(on_apply, yaml_box, [message, extra, *widgets]).then(refresh, inputs, outputs)
    save_btn.click(on_save, inputs, message)
    advise_btn.click(lambda *a: advise_text(list(a[:n]), a[n]), [*widgets, extra], advice)
    dry_btn.click(lambda *a: dry_run_text(list(a[:n]), a[n]), [*widgets, extra], advice)
    return {"widgets": widgets, "extra": extra, "path": path, "refresh": (refresh, inputs, outputs)}
