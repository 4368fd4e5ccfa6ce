"""`tuneforge data ...` end to end through the CLI."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from tests.datatools.conftest import read_jsonl
from tuneforge.cli.main import app
from tuneforge.data.formats import load_records
from tuneforge.errors import DataError

runner = CliRunner()

BAD = [
    {"instruction": "fine", "output": "ok"},
    "{broken",
    {"instruction": "x"},
    {"instruction": "x", "output": ["list"]},
    {"instruction": "  ", "output": "y"},
    "[1, 2]",
]


def test_validate_lists_every_bad_row_like_the_foundation_and_exits_1(jsonl):
    path = jsonl(BAD)
    res = runner.invoke(
        app, ["data", "validate", str(path), "--format", "alpaca", "--json"]
    )
    assert res.exit_code == 1
    report = json.loads(res.stdout)
    assert (report["rows"], report["good"], report["bad"]) == (6, 1, 5)
    try:
        load_records(path, "alpaca")
    except DataError as exc:
        foundation = str(exc)
    for bad in report["bad_rows"]:
        line = (
            f"{bad['source']}"
            + (f" field '{bad['field']}'" if bad["field"] else "")
            + f": {bad['reason']}"
        )
        assert (
            line in foundation
        )  # same file:line, field and reason as training would print
    assert [b["source"].rsplit(":", 1)[1] for b in report["bad_rows"]] == [
        "2",
        "3",
        "4",
        "5",
        "6",
    ]
    text = runner.invoke(app, ["data", "validate", str(path)])
    assert text.exit_code == 1 and "data.jsonl:3 field 'output': missing" in text.stdout


def test_validate_clean_file_exits_0_and_missing_file_2(jsonl, tmp_path):
    assert (
        runner.invoke(
            app, ["data", "validate", str(jsonl([{"text": "hi"}])), "--json"]
        ).exit_code
        == 0
    )
    res = runner.invoke(
        app, ["data", "validate", str(tmp_path / "nope.jsonl"), "--json"]
    )
    assert (
        res.exit_code == 2 and "data file not found" in json.loads(res.stdout)["error"]
    )


def test_clean_writes_output_report_plots_and_trace(jsonl, tmp_path):
    rows = [
        {"instruction": "Hi  there", "output": "Hello", "category": "a"},
        {"instruction": "hi there", "output": "Hello", "category": "a"},
        {"instruction": "Bye", "output": "Mail me at a@b.io", "category": "b"},
    ]
    out = tmp_path / "clean.jsonl"
    res = runner.invoke(
        app,
        [
            "data",
            "clean",
            str(jsonl(rows)),
            "-o",
            str(out),
            "--pii",
            "--balance",
            "category",
            "--upsample",
        ],
    )
    assert res.exit_code == 0, res.output
    assert read_jsonl(out) == [
        {"instruction": "Hi there", "output": "Hello", "category": "a"},
        {"instruction": "Bye", "output": "Mail me at [EMAIL]", "category": "b"},
    ]
    rep = tmp_path / "clean-report"
    for name in (
        "report.md",
        "report.html",
        "lengths.png",
        "balance.png",
        "trace.jsonl",
        "report.json",
    ):
        assert (rep / name).stat().st_size > 0, name
    md = (rep / "report.md").read_text()
    assert (
        "| dedup | removed | exact duplicate | 1 |" in md
        and "| category = a | 2 | 1 |" in md
    )


def test_clean_bad_input_exits_2_with_file_line(jsonl, tmp_path):
    res = runner.invoke(
        app, ["data", "clean", str(jsonl(BAD)), "-o", str(tmp_path / "o.jsonl")]
    )
    assert res.exit_code == 2 and "data.jsonl:2: invalid JSON" in res.output
    res = runner.invoke(
        app,
        [
            "data",
            "clean",
            str(jsonl(BAD)),
            "-o",
            str(tmp_path / "o.jsonl"),
            "--skip-bad",
        ],
    )
    assert res.exit_code == 0 and len(read_jsonl(tmp_path / "o.jsonl")) == 1


def test_inspect_json(jsonl, tiny_model_dir):
    rows = [
        {
            "instruction": "What is the capital of France?",
            "output": "Paris",
            "category": "geo",
        }
    ] * 2 + [
        {
            "instruction": "Quelle est la capitale de la France ? Je voudrais le savoir.",
            "output": "",
            "category": "fr",
        }
    ]
    res = runner.invoke(
        app,
        [
            "data",
            "inspect",
            str(jsonl(rows)),
            "--tokenizer",
            str(tiny_model_dir),
            "--max-length",
            "12",
            "--category",
            "category",
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    stats = json.loads(res.stdout)
    assert (stats["rows"], stats["bad_rows"], stats["exact_duplicates"]) == (2, 1, 1)
    assert stats["categories"] == {"geo": 2} and stats["length_unit"] == "tokens"
    assert stats["field_completeness"] == {
        "category": 1.0,
        "instruction": 1.0,
        "output": 1.0,
    }
    assert stats["languages"] == {"en": 2} and stats["overlong"]["count"] == 2


def test_convert_split_mix_chunk_commands(jsonl, tmp_path, tiny_model_dir):
    path = jsonl(
        [
            {"instruction": f"q{i}", "output": "a", "cat": "x" if i % 2 else "y"}
            for i in range(10)
        ]
    )
    assert (
        runner.invoke(
            app,
            [
                "data",
                "convert",
                str(path),
                "--to",
                "messages",
                "-o",
                str(tmp_path / "m.jsonl"),
            ],
        ).exit_code
        == 0
    )
    assert read_jsonl(tmp_path / "m.jsonl")[0] == {
        "messages": [
            {"role": "user", "content": "q0"},
            {"role": "assistant", "content": "a"},
        ],
        "cat": "y",
    }
    bad = runner.invoke(
        app,
        ["data", "convert", str(path), "--to", "yaml", "-o", str(tmp_path / "x.jsonl")],
    )
    assert bad.exit_code == 2 and "not a format" in bad.output
    assert (
        runner.invoke(
            app,
            [
                "data",
                "split",
                str(path),
                "--val",
                "0.2",
                "--stratify",
                "cat",
                "-o",
                str(tmp_path / "s"),
            ],
        ).exit_code
        == 0
    )
    assert len(read_jsonl(tmp_path / "s" / "val.jsonl")) == 2
    res = runner.invoke(
        app,
        [
            "data",
            "mix",
            f"{path}:0.5",
            f"{tmp_path / 'm.jsonl'}:0.5",
            "-o",
            str(tmp_path / "mix.jsonl"),
        ],
    )
    assert res.exit_code == 0 and len(read_jsonl(tmp_path / "mix.jsonl")) == 20
    doc = jsonl(
        [{"text": "The quick brown fox jumps over the lazy dog. " * 5}], "doc.jsonl"
    )
    res = runner.invoke(
        app,
        [
            "data",
            "chunk",
            str(doc),
            "-o",
            str(tmp_path / "c.jsonl"),
            "--max-tokens",
            "16",
            "--overlap",
            "4",
            "--tokenizer",
            str(tiny_model_dir),
        ],
    )
    assert res.exit_code == 0, res.output
    assert len(read_jsonl(tmp_path / "c.jsonl")) > 1


def test_clean_refuses_to_overwrite_its_input(jsonl):
    path = jsonl([{"text": "a"}])
    res = runner.invoke(app, ["data", "clean", str(path), "-o", str(path)])
    assert res.exit_code == 2 and "is the input file" in res.output
    assert read_jsonl(path) == [{"text": "a"}]
