"""Preference and KTO rows: accepted shapes, auto detection, and file:line errors for bad rows."""

import json
from pathlib import Path

import pytest

from tuneforge.config.schema import Recipe
from tuneforge.data.preference import (
    PreferenceRecord,
    UnpairedRecord,
    as_unpaired,
    load_preference_records,
)
from tuneforge.data.records import Message
from tuneforge.errors import DataError


def write_jsonl(path: Path, rows) -> Path:
    path.write_text(
        "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows)
    )
    return path


def test_plain_message_and_implicit_prompt_rows(tmp_path):
    rows = [
        {
            "prompt": "Hi?",
            "chosen": "Hello!",
            "rejected": "Go away.",
            "system": "Be kind.",
        },
        {
            "prompt": [
                {"role": "user", "content": "A"},
                {"role": "assistant", "content": "B"},
                {"role": "user", "content": "C"},
            ],
            "chosen": [{"role": "assistant", "content": "good"}],
            "rejected": [{"role": "assistant", "content": "bad"}],
        },
        {
            "chosen": [
                {"role": "user", "content": "Q"},
                {"role": "assistant", "content": "yes"},
            ],
            "rejected": [
                {"role": "user", "content": "Q"},
                {"role": "assistant", "content": "no"},
            ],
        },
    ]
    loaded = load_preference_records(write_jsonl(tmp_path / "p.jsonl", rows))
    assert loaded.format == "preference"
    a, b, c = loaded.records
    assert a == PreferenceRecord(
        (Message("system", "Be kind."), Message("user", "Hi?")),
        "Hello!",
        "Go away.",
        f"{tmp_path / 'p.jsonl'}:1",
    )
    assert [m.role for m in b.prompt] == ["user", "assistant", "user"] and (
        b.chosen,
        b.rejected,
    ) == ("good", "bad")
    assert c.prompt == (Message("user", "Q"),) and (c.chosen, c.rejected) == (
        "yes",
        "no",
    )


def test_kto_rows_and_labels(tmp_path):
    rows = [
        {"prompt": "p1", "completion": "c1", "label": True},
        {"prompt": "p2", "completion": "c2", "label": 0},
        {"prompt": "p3", "completion": "c3", "label": "desirable"},
    ]
    loaded = load_preference_records(write_jsonl(tmp_path / "k.jsonl", rows))
    assert loaded.format == "kto"
    assert [r.label for r in loaded.records] == [True, False, True]


def test_pairs_become_unpaired_for_kto():
    rec = PreferenceRecord((Message("user", "q"),), "good", "bad", "f:1")
    assert as_unpaired([rec]) == [
        UnpairedRecord(rec.prompt, "good", True, "f:1"),
        UnpairedRecord(rec.prompt, "bad", False, "f:1"),
    ]


@pytest.mark.parametrize(
    ("row", "field", "reason"),
    [
        (
            {"prompt": "q", "chosen": "same", "rejected": " same "},
            "rejected",
            "is identical to 'chosen'",
        ),
        ({"prompt": "q", "chosen": "", "rejected": "b"}, "chosen", "is empty"),
        ({"prompt": "  ", "chosen": "a", "rejected": "b"}, "prompt", "is empty"),
        (
            {"prompt": "q", "chosen": "a", "rejected": 3},
            "rejected",
            "must be a string or a list of messages, got int",
        ),
        ({"prompt": "q", "chosen": "a"}, "rejected", "missing"),
        (
            {"prompt": 7, "chosen": "a", "rejected": "b"},
            "prompt",
            "must be a string or a list of messages, got int",
        ),
        (
            {
                "prompt": "q",
                "chosen": [{"role": "user", "content": "x"}],
                "rejected": "b",
            },
            "chosen",
            "exactly one assistant message",
        ),
        (
            {
                "chosen": [
                    {"role": "user", "content": "Q"},
                    {"role": "assistant", "content": "a"},
                ],
                "rejected": [
                    {"role": "user", "content": "other"},
                    {"role": "assistant", "content": "b"},
                ],
            },
            "rejected",
            "shares no prompt",
        ),
    ],
)
def test_bad_preference_rows_name_file_line_and_field(tmp_path, row, field, reason):
    good = {"prompt": "fine", "chosen": "a", "rejected": "b"}
    path = write_jsonl(tmp_path / "bad.jsonl", [good, row])
    with pytest.raises(DataError) as exc:
        load_preference_records(path, "preference")
    msg = str(exc.value)
    assert f"{path}:2 field '{field}'" in msg and reason in msg


def test_bad_kto_label_and_skip_policy(tmp_path):
    rows = [
        {"prompt": "p", "completion": "c", "label": True},
        {"prompt": "p", "completion": "c", "label": "maybe"},
        "[1, 2]",
    ]
    path = write_jsonl(tmp_path / "k.jsonl", rows)
    with pytest.raises(DataError, match=r"k.jsonl:2 field 'label': must be true/false"):
        load_preference_records(path)
    loaded = load_preference_records(path, on_bad_rows="skip")
    assert len(loaded.records) == 1
    assert [b.source.rsplit(":", 1)[1] for b in loaded.bad_rows] == ["2", "3"]
    assert "must be a JSON object" in loaded.bad_rows[1].reason


def test_non_preference_first_row_is_a_clear_error(tmp_path):
    path = write_jsonl(tmp_path / "sft.jsonl", [{"instruction": "a", "output": "b"}])
    with pytest.raises(DataError, match="not preference data"):
        load_preference_records(path)


def test_recipe_rejects_mismatched_objective_and_format():
    with pytest.raises(ValueError, match="needs preference data"):
        Recipe(data={"train": "x.jsonl", "format": "alpaca"}, objective={"type": "dpo"})
    with pytest.raises(ValueError, match="cannot train on data.format 'preference'"):
        Recipe(
            data={"train": "x.jsonl", "format": "preference"}, objective={"type": "sft"}
        )
    with pytest.raises(ValueError, match="uses no reference model"):
        Recipe(
            data={"train": "x.jsonl"},
            objective={"type": "simpo", "preference": {"precompute_reference": True}},
        )
    with pytest.raises(ValueError, match="label_smoothing > 0"):
        Recipe(
            data={"train": "x.jsonl"},
            objective={"type": "dpo", "preference": {"loss": "conservative"}},
        )
    assert (
        Recipe(
            data={"train": "x.jsonl", "format": "kto"}, objective={"type": "kto"}
        ).objective.type
        == "kto"
    )
