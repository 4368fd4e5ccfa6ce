"""Forgetting probe: each kind's scoring on hand-made outputs, the section, bad rows and the bundled probe."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from tuneforge.errors import DataError
from tuneforge.evaluate.forgetting import ProbeItem, Rule, check_rule, load_probe, score_forgetting, score_item


def factual(*answers: str) -> ProbeItem:
    return ProbeItem(id="f", kind="factual", prompt="q", answers=list(answers))


def arithmetic(answer: float) -> ProbeItem:
    return ProbeItem(id="a", kind="arithmetic", prompt="q", answer=answer)


@pytest.mark.parametrize(
    ("answers", "output", "right"),
    [
        (["Paris"], "The capital of France is Paris.", True),
        (["Paris"], "paris", True),
        (["Paris"], "Parisian food is great.", False),  # whole words only
        (["0", "zero"], "Water freezes at 0°C.", True),
        (["0", "zero"], "It is 100 degrees.", False),
        (["Leonardo", "da Vinci"], "It was painted by Leonardo da Vinci.", True),
        (["carbon dioxide", "CO2"], "Plants take in oxygen.", False),
    ],
)
def test_factual(answers, output, right) -> None:
    assert score_item(factual(*answers), output)[0] is right


@pytest.mark.parametrize(
    ("answer", "output", "right"),
    [
        (12, "12", True),
        (12, "7 + 5 = 12", True),
        (12, "The answer is 12.", True),
        (12, "12 or maybe 13", False),  # the last number counts
        (1000, "250 + 750 = 1,000", True),
        (7, "seven", False),
        (-3, "It is -3.", True),
        (2.5, "2.5", True),
    ],
)
def test_arithmetic(answer, output, right) -> None:
    assert score_item(arithmetic(answer), output)[0] is right


@pytest.mark.parametrize(
    ("rule", "output", "right"),
    [
        ({"type": "word_count", "n": 3}, "Vast, blue, deep.", True),
        ({"type": "word_count", "n": 3}, "The ocean is vast.", False),
        ({"type": "word_count", "n": 1}, "Apple", True),
        ({"type": "word_count", "n": 2}, "well-known place", True),  # a hyphenated word is one word
        ({"type": "max_words", "n": 5}, "Tall green quiet trees.", True),
        ({"type": "max_words", "n": 3}, "Tall green quiet trees.", False),
        ({"type": "max_words", "n": 3}, "", False),
        ({"type": "uppercase"}, "THE SKY IS BLUE!", True),
        ({"type": "uppercase"}, "The SKY is blue", False),
        ({"type": "uppercase"}, "123", False),
        ({"type": "lowercase"}, "dogs are loyal.", True),
        ({"type": "lowercase"}, "Dogs are loyal.", False),
        ({"type": "starts_with", "text": "yes"}, "Yes, the sun is a star.", True),
        ({"type": "starts_with", "text": "yes"}, '"Yes" it is.', True),
        ({"type": "starts_with", "text": "yes"}, "The sun is a star. Yes.", False),
        ({"type": "ends_with", "text": "done"}, "It rains a lot. Done.", True),
        ({"type": "ends_with", "text": "done"}, "Done with rain, it pours.", False),
        ({"type": "includes", "words": ["river", "bridge"]}, "A bridge crosses the river.", True),
        ({"type": "includes", "words": ["river", "bridge"]}, "A bridge crosses the rivers.", False),
        ({"type": "excludes", "words": ["cold"]}, "Winter is icy and dark.", True),
        ({"type": "excludes", "words": ["cold"]}, "Winter is Cold.", False),
        ({"type": "excludes", "words": ["cold"]}, "", False),
        ({"type": "lines", "n": 3}, "red\ngreen\n\nblue\n", True),
        ({"type": "lines", "n": 3}, "red, green, blue", False),
        ({"type": "json_keys", "keys": ["name", "age"]}, '```json\n{"name": "Ana", "age": 30}\n```', True),
        ({"type": "json_keys", "keys": ["name", "age"]}, 'Here: {"name": "Ana", "age": 30} ok', True),
        ({"type": "json_keys", "keys": ["name", "age"]}, '{"name": "Ana"}', False),
        ({"type": "json_keys", "keys": ["name"]}, "name: Ana", False),
        ({"type": "number_only"}, "3", True),
        ({"type": "number_only"}, "3.", True),
        ({"type": "number_only"}, "A triangle has 3 sides.", False),
    ],
)
def test_instruction_rules(rule, output, right) -> None:
    ok, reason = check_rule(Rule.model_validate(rule), output)
    assert ok is right, reason
    assert reason


def test_section_per_kind_and_records() -> None:
    items = [
        factual("Paris"), factual("Rome"),
        arithmetic(12), arithmetic(7), arithmetic(9),
        ProbeItem(id="i", kind="instruction", prompt="q", rule={"type": "uppercase"}),
    ]
    outputs = ["Paris.", "Milan", "12", "7", "8", "HELLO"]
    section, rows = score_forgetting(items, outputs)
    assert section["n"] == 6
    assert section["score"] == pytest.approx(4 / 6)
    assert section["by_kind"] == pytest.approx({"factual": 0.5, "arithmetic": 2 / 3, "instruction": 1.0})
    assert [r["correct"] for r in rows] == [True, False, True, True, False, True]
    assert rows[4]["reason"] == "last number 8 (wanted 9)"
    assert rows[1]["output"] == "Milan" and "none of" in rows[1]["reason"]


@pytest.mark.parametrize(
    ("row", "why"),
    [
        ({"id": "x", "kind": "factual", "prompt": "q"}, "needs 'answers'"),
        ({"id": "x", "kind": "arithmetic", "prompt": "q", "answer": 1, "answers": ["1"]}, "not ['answers']"),
        ({"id": "x", "kind": "instruction", "prompt": "q", "rule": {"type": "word_count"}}, "needs 'n'"),
        ({"id": "x", "kind": "instruction", "prompt": "q", "rule": {"type": "rhyme"}}, "rule.type"),
        ({"id": "x", "kind": "trivia", "prompt": "q", "answers": ["a"]}, "kind"),
    ],
)
def test_bad_rows_name_the_line(tmp_path, row, why) -> None:
    path = tmp_path / "probe.jsonl"
    good = {"id": "ok", "kind": "factual", "prompt": "q", "answers": ["a"]}
    path.write_text(json.dumps(good) + "\n\n" + json.dumps(row) + "\n")
    with pytest.raises(DataError) as exc:
        load_probe(str(path))
    assert f"{path}:3:" in exc.value.message and why in exc.value.message


def test_custom_probe_is_read(tmp_path) -> None:
    path = tmp_path / "probe.jsonl"
    path.write_text(json.dumps({"id": "1", "kind": "arithmetic", "prompt": "1+1?", "answer": 2}) + "\n")
    items = load_probe(str(path))
    assert len(items) == 1 and items[0].answer == 2


def test_bundled_probe_counts_and_rows() -> None:
    items = load_probe()
    assert Counter(it.kind for it in items) == {"factual": 20, "arithmetic": 20, "instruction": 20}
    assert len({it.id for it in items}) == 60
    rules = Counter(it.rule.type for it in items if it.rule)
    assert len(rules) >= 8  # many kinds of checkable instruction
    # Every item can be answered right: a reply made from its own answer or rule passes.
    for it in items:
        if it.kind == "factual":
            assert score_item(it, f"It is {it.answers[0]}.")[0], it.id
        elif it.kind == "arithmetic":
            assert score_item(it, f"{it.answer:g}")[0], it.id
