"""Issue 17, recipe side: bad recipe input, fuzzed.

Properties: ``load_recipe`` (a file of arbitrary bytes, arbitrary YAML, schema-shaped but wrong
mappings), dotted overrides and ``tuneforge train --dry-run`` never raise anything but a
:class:`TuneforgeError`, every message says where (the file, the key path or the override text), the
CLI prints it (exit 2, ``error:``, no traceback), and YAML loading constructs no Python objects.
Each property runs a small example budget (``FUZZ`` below) so the file stays in the fast suite; the
crashes fuzzing found are pinned as plain examples at the end, so they fail on every run, not only
when hypothesis happens to draw them again.
"""

from __future__ import annotations

import io
import math
import re
import tempfile
import typing
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel
from rich.console import Console
from typer.testing import CliRunner

from tuneforge.cli.errors import print_user_error
from tuneforge.cli.main import app
from tuneforge.config import load_recipe
from tuneforge.config.load import apply_overrides, parse_override, read_recipe_file, shown
from tuneforge.config.schema import Recipe
from tuneforge.errors import ConfigError, TuneforgeError

# database=None: the checkout is shared, and a .hypothesis/ folder there would be committed by accident.
FUZZ = settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
CLI_FUZZ = settings(max_examples=15, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

TOP = tuple(Recipe.model_fields)
VALID_BASE: dict[str, Any] = {"data": {"train": "t.jsonl"}}
SCHEMA_PATH = re.compile(r"\b(" + "|".join(TOP) + r")\.\w+")


def _schema_paths(model: type[BaseModel], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every section and key path of the schema (``("method", "lora", "r")``, ``("method", "lora")``, ...)."""
    paths = []
    for name, field in model.model_fields.items():
        path = prefix + (name,)
        paths.append(path)
        ann = field.annotation
        members = typing.get_args(ann) or (ann,)
        for member in members:
            if isinstance(member, type) and issubclass(member, BaseModel):
                paths.extend(_schema_paths(member, path))
    return paths


PATHS = _schema_paths(Recipe)


def _typo(name: str, draw: st.DrawFn) -> str:
    """A plausible-but-wrong key: one character dropped, doubled or changed, or the case flipped."""
    if not name:
        return "x"
    i = draw(st.integers(0, len(name) - 1))
    kind = draw(st.sampled_from(["drop", "double", "swap", "upper", "same"]))
    if kind == "drop":
        return name[:i] + name[i + 1 :] or "x"
    if kind == "double":
        return name[:i] + name[i] + name[i:]
    if kind == "swap":
        return name[:i] + "-" + name[i + 1 :]
    return name.upper() if kind == "upper" else name


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=10**30, max_value=10**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(["lora", "auto", "sft", "dpo", "cosine", "t.jsonl", "", "0", "-1", "1e-4", "yes", "~"]),
)
yaml_values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12,
)


@st.composite
def schema_shaped(draw: st.DrawFn) -> dict[str, Any]:
    """A nested mapping of real (or typo'd) section and key names with values of arbitrary type."""
    data: dict[str, Any] = {}
    if draw(st.booleans()):
        data["data"] = {"train": "t.jsonl"}  # lets many examples reach the cross-section validators
    for _ in range(draw(st.integers(1, 6))):
        path = list(draw(st.sampled_from(PATHS)))
        if draw(st.integers(0, 4)) == 0:
            path[-1] = _typo(path[-1], draw)
        node = data
        for part in path[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node[path[-1]] = draw(yaml_values)
    return data


def check_message(exc: TuneforgeError, *, source: str, overrides: list[str] = ()) -> None:
    """The message says where: the override text, or the source plus a key path on every problem line.

    It also renders through the CLI's printer, which quotes it inside rich markup.
    """
    msg = str(exc)
    buf = io.StringIO()
    print_user_error(exc, Console(file=buf, width=80))
    assert buf.getvalue().startswith("error: ")
    if any(f"override '{shown(o)}'" in msg for o in overrides):
        return
    assert source in msg, msg
    first, *rest = exc.message.splitlines()
    if first.endswith("is not valid:"):
        assert rest, msg
        for line in rest:
            m = re.match(r"  - (.+?): ", line)
            assert m, f"problem line names no key path: {line!r}"
            if m[1] == "(recipe)":  # a cross-section rule: its text names the keys
                assert SCHEMA_PATH.search(line), line


def loads_or_config_error(path: Path | None = None, overrides: list[str] | None = None, base: dict | None = None) -> Recipe | None:
    """Run load_recipe; a ConfigError must say where, anything else propagates and fails the test."""
    try:
        return load_recipe(path, overrides or [], base=base)
    except ConfigError as exc:
        check_message(exc, source=shown(str(path)) if path is not None else "recipe", overrides=overrides or [])
        return None


@pytest.fixture(scope="module")
def fuzz_dir() -> typing.Iterator[Path]:
    """One folder per module: hypothesis reruns a test body many times and function fixtures are not reset between them."""
    with tempfile.TemporaryDirectory() as d:
        yield Path(d)


# (1) the YAML file loader


@FUZZ
@given(content=st.binary(max_size=300))
def test_a_file_of_arbitrary_bytes_loads_or_says_which_file(fuzz_dir: Path, content: bytes) -> None:
    path = fuzz_dir / "bytes.yaml"
    path.write_bytes(content)
    loads_or_config_error(path)


YAML_TOKENS = list("ab:-_ 0123456789.[]{},&*!|>'\"#%@`?~\n\t\\=") + ["!!python/object", "data", "train", "&a", "*a", "\n  "]
YAMLISH = st.lists(st.sampled_from(YAML_TOKENS), max_size=60).map("".join)


@FUZZ
@given(text=YAMLISH)
def test_yaml_shaped_text_loads_or_says_which_file(fuzz_dir: Path, text: str) -> None:
    path = fuzz_dir / "text.yaml"
    path.write_text(text, encoding="utf-8")
    loads_or_config_error(path)


@FUZZ
@given(doc=yaml_values)
def test_any_yaml_document_loads_or_says_which_file(fuzz_dir: Path, doc: Any) -> None:
    path = fuzz_dir / "doc.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    loads_or_config_error(path)


@FUZZ
@given(doc=schema_shaped())
def test_schema_shaped_wrong_recipes_name_the_key_path(fuzz_dir: Path, doc: dict[str, Any]) -> None:
    path = fuzz_dir / "shaped.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    from_file = loads_or_config_error(path)
    from_base = loads_or_config_error(base=doc)
    assert (from_file is None) == (from_base is None)  # a file and the same dict as base agree


def test_the_schema_paths_reach_nested_sections() -> None:
    """The generator above only fuzzes deep keys if the path walk finds them."""
    assert ("method", "lora", "r") in PATHS and ("objective", "preference", "beta") in PATHS and ("data", "train") in PATHS


# (2) dotted overrides

TRICKY_VALUES = st.sampled_from(
    [
        "", "=", "x=y", "[1,{2:3}]", "{a: 1}", "!!python/object:os.system", "!!python/object/apply:os.system [echo]",
        "&a 1", "*a", "&a [*a]", "1" * 5000, "1e999", "1.0e400", "-.inf", ".nan", "2001-02-30", "!!int abc",
        "!!float x", "!!timestamp x", "!!binary ???", "[" * 2000, "{" * 50, "\x00", "\u202e", "ü", "null", "~",
        "!!set {a}", "'unterminated", "- a\n- b", "a: b: c", "%YAML 1.1", "---", "...", "[/bold]",
    ]
)
KEYS = st.one_of(
    st.sampled_from([".".join(p) for p in PATHS]),
    st.sampled_from(["", ".", "..", "a.", ".a", "a..b", " training . epochs ", "training.epochs.x", "data.train.deep",
                     "method", "training", "[/x]", "\u00fc", "1", "eval.metrics.0"]),
    st.text(max_size=15),
)
OVERRIDES = st.one_of(st.text(max_size=40), st.builds(lambda k, v: f"{k}={v}", KEYS, st.one_of(TRICKY_VALUES, st.text(max_size=20))))


@FUZZ
@given(text=OVERRIDES)
def test_parse_override_splits_or_quotes_the_override(text: str) -> None:
    try:
        parts, _value = parse_override(text)
    except ConfigError as exc:
        assert f"override '{shown(text)}'" in str(exc)
        return
    assert "=" in text and all(parts) and ".".join(parts) == text.split("=", 1)[0].strip()


@FUZZ
@given(overrides=st.lists(OVERRIDES, max_size=4), base=st.one_of(st.just(VALID_BASE), schema_shaped()))
def test_overrides_apply_or_name_the_override_or_key(overrides: list[str], base: dict[str, Any]) -> None:
    before = repr(base)
    loads_or_config_error(overrides=overrides, base=base)
    assert repr(base) == before  # load_recipe never writes into the caller's base


@FUZZ
@given(data=yaml_values.filter(lambda v: isinstance(v, dict)), overrides=st.lists(OVERRIDES, min_size=1, max_size=3))
def test_apply_overrides_sets_the_last_value_or_names_the_override(data: dict[str, Any], overrides: list[str]) -> None:
    try:
        out = apply_overrides(data, overrides)
    except ConfigError as exc:
        assert any(f"override '{shown(o)}'" in str(exc) for o in overrides), str(exc)
        return
    parts, value = parse_override(overrides[-1])
    node = out
    for part in parts:
        node = node[part]
    assert repr(node) == repr(value)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["training=3"], "training: Input should be a valid dictionary"),  # a section overridden by a value
        (["training.epochs=1", "training.epochs.x=1"], "'training.epochs' is a value, not a section"),  # a value by a section
        (["data.train=[1,{2:3}]"], "data.train: Input should be a valid string"),
        (["training.epochs=" + "9" * 5000], "override 'training.epochs=99999"),
        (["training.epochs=1.0e400"], "training.epochs"),  # inf is a float, and epochs only needs > 0
        (["=1"], "empty key part"),
        (["..=x"], "empty key part"),
        (["\ud800=1"], "key is not valid UTF-8"),
        (["data.train=\udcff"], "not valid YAML"),
    ],
)
def test_override_edge_cases_fail_with_their_reason(overrides: list[str], expected: str) -> None:
    try:
        r = load_recipe(overrides=overrides, base=VALID_BASE)
    except ConfigError as exc:
        assert expected in str(exc), str(exc)
        check_message(exc, source="recipe", overrides=overrides)
        return
    assert overrides == ["training.epochs=1.0e400"] and math.isinf(r.training.epochs)


# YAML safety: nothing but plain data is ever constructed

PYTHON_TAGS = [
    "!!python/object/apply:os.system ['touch {marker}']",
    "!!python/object/new:os.system ['touch {marker}']",
    "!!python/name:os.system",
    "!!python/object:pathlib.Path {{}}",
    "!!python/module:os",
]


@pytest.mark.parametrize("tag", PYTHON_TAGS)
def test_python_tags_are_config_errors_not_objects(tmp_path: Path, tag: str) -> None:
    marker = tmp_path / "ran"
    value = tag.format(marker=marker)
    path = tmp_path / "r.yaml"
    path.write_text(f"data:\n  train: {value}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid YAML") as file_err:
        load_recipe(path)
    assert str(path) in str(file_err.value)
    with pytest.raises(ConfigError, match="not valid YAML") as override_err:
        load_recipe(overrides=[f"data.train={value}"], base=VALID_BASE)
    assert "override 'data.train=!!python/" in str(override_err.value)
    assert not marker.exists()


# read_recipe_file on files that are not recipes


def test_read_recipe_file_rejects_a_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a directory") as e:
        read_recipe_file(tmp_path)
    assert str(tmp_path) in str(e.value)


def test_read_recipe_file_reports_an_unreadable_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "r.yaml"
    path.write_text("data: {train: t.jsonl}\n")

    def denied(self: Path) -> bytes:  # chmod 000 does not stop root, so simulate the OS refusing
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", denied)
    with pytest.raises(ConfigError, match="cannot read recipe file .*Permission denied") as e:
        read_recipe_file(path)
    assert str(path) in str(e.value)


def test_read_recipe_file_names_the_first_non_utf8_byte(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_bytes(b"data:\n  train: caf\xe9.jsonl\n")
    with pytest.raises(ConfigError, match=r"not UTF-8 text \(byte 0xe9 at offset 18\)") as e:
        read_recipe_file(path)
    assert str(path) in str(e.value)


def test_an_empty_file_is_an_empty_recipe_that_lacks_data_train(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text("")
    assert read_recipe_file(path) == {}
    with pytest.raises(ConfigError, match="data: required, but missing"):
        load_recipe(path)


@pytest.mark.parametrize(("text", "kind"), [("- a\n- b\n", "list"), ("42\n", "int"), ("just text\n", "str")])
def test_a_file_that_is_not_a_mapping_says_what_it_is(tmp_path: Path, text: str, kind: str) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=f"must be a mapping of sections .*got {kind}") as e:
        read_recipe_file(path)
    assert str(path) in str(e.value)


def test_a_missing_file_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="recipe file not found"):
        read_recipe_file(tmp_path / "nope.yaml")


# the crashes fuzzing found, pinned (each raised something other than ConfigError before the fix)

CRASHING_VALUES = [
    ("1" * 5000, "cannot be constructed"),  # ValueError: int over Python's 4300-digit limit
    ("2001-02-30", "cannot be constructed"),  # ValueError: day is out of range for month
    ("!!int abc", "cannot be constructed"),  # ValueError from int()
    ("!!float x", "cannot be constructed"),  # ValueError from float()
    ("!!timestamp x", "cannot be constructed"),  # AttributeError inside PyYAML
    ("[" * 3000, "nested too deeply"),  # RecursionError in the composer
    ("\x00", "not valid YAML"),  # ReaderError has no .problem: AttributeError in our handler
]


@pytest.mark.parametrize(("value", "expected"), CRASHING_VALUES)
def test_values_that_crashed_yaml_are_config_errors_in_files_and_overrides(tmp_path: Path, value: str, expected: str) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(f"data: {{train: t.jsonl}}\ntraining:\n  epochs: {value}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=expected) as file_err:
        load_recipe(path)
    check_message(file_err.value, source=str(path))
    with pytest.raises(ConfigError, match=expected) as override_err:
        load_recipe(overrides=[f"training.epochs={value}"], base=VALID_BASE)
    check_message(override_err.value, source="recipe", overrides=[f"training.epochs={value}"])
    assert len(str(override_err.value)) < 600  # a 5000-digit override is clipped in the message


def test_overrides_do_not_leak_into_a_reused_base() -> None:
    """load_recipe copied only the top level of base, so an override wrote into the caller's nested dict."""
    base = {"data": {"train": "t.jsonl"}}
    assert load_recipe(overrides=["data.format=alpaca"], base=base).data.format == "alpaca"
    assert base == {"data": {"train": "t.jsonl"}}
    assert load_recipe(base=base).data.format == "auto"


def test_a_value_too_large_to_repr_is_described_not_raised() -> None:
    """repr() of an int over 4300 digits raises ValueError; the error formatter used repr on bad inputs."""
    with pytest.raises(ConfigError, match=r"training.epochs: .*<int too large to show>"):
        load_recipe(base={"data": {"train": "t.jsonl"}, "training": {"epochs": 10**5000}})


def test_a_billion_laughs_recipe_fails_fast_with_a_short_message(tmp_path: Path) -> None:
    """YAML aliases share lists, so printing the bad value in full would take 9**8 leaves."""
    lines = ["l0: &l0 [a, a, a, a, a, a, a, a, a]"] + [f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, 9)]
    path = tmp_path / "r.yaml"
    path.write_text("\n".join(lines) + "\ndata: {train: t.jsonl}\neval: {metrics: *l8}\n")
    with pytest.raises(ConfigError) as e:
        load_recipe(path)
    assert "eval.metrics.0: Input should be a valid string" in str(e.value) and len(str(e.value)) < 5000


# (3) the CLI: tuneforge train FILE --dry-run

runner = CliRunner()


def assert_clean_cli_error(args: list[str], *names: str) -> str:
    res = runner.invoke(app, ["train", *args, "--dry-run"])
    assert res.exit_code == 2, (res.output, res.exception)
    assert res.output.startswith("error: ") and "Traceback" not in res.output, res.output
    assert any(n in res.output for n in names), res.output
    return res.output


@CLI_FUZZ
@given(doc=schema_shaped(), typo=st.sampled_from(["modle", "trainig", "data.trian", "method.lora.rank", "eval.metric"]))
def test_train_dry_run_on_generated_bad_recipes_exits_2_without_traceback(fuzz_dir: Path, doc: dict[str, Any], typo: str) -> None:
    node = doc
    *sections, key = typo.split(".")
    for part in sections:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[key] = 1  # an unknown key, so every generated recipe is bad
    path = fuzz_dir / "cli.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    out = assert_clean_cli_error([str(path)], str(path))
    assert typo in out


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"\xff\xfe\x00d", "not UTF-8"),
        (b"- a\n- b\n", "must be a mapping"),
        (b"data: {train: !!python/object/apply:os.system [echo]}\n", "not valid YAML"),
        (b"data: {train: t.jsonl}\ntraining: {epochs: " + b"7" * 5000 + b"}\n", "cannot be constructed"),
        (b"data: {train: t.jsonl}\n'[/x]': 1\n", "[/x]: unknown key"),  # rich read the key as a closing tag: MarkupError
        (b"data: {train: t.jsonl}\n'[bold]x': 1\n", "[bold]x: unknown key"),  # ...or silently swallowed it as markup
    ],
)
def test_train_dry_run_on_bad_files_exits_2(tmp_path: Path, content: bytes, expected: str) -> None:
    path = tmp_path / "r.yaml"
    path.write_bytes(content)
    assert expected in assert_clean_cli_error([str(path)], str(path))


def test_train_dry_run_on_a_directory_and_a_bad_override(tmp_path: Path) -> None:
    assert "is a directory" in assert_clean_cli_error([str(tmp_path)], str(tmp_path))
    path = tmp_path / "r.yaml"
    path.write_text("data: {train: t.jsonl}\n")
    assert_clean_cli_error([str(path), "[/x].y=1"], "override '[/x].y=1'", "[/x]: unknown key")
    assert_clean_cli_error([str(path), "training.epochs=2001-02-30"], "override 'training.epochs=2001-02-30'")
