"""Each cleaning step on handmade data with exact expected outputs."""

from __future__ import annotations

import pytest

from tests.datatools.conftest import read_jsonl
from tuneforge.config.pipeline import (
    BalanceStep,
    ConvertStep,
    DedupStep,
    NormalizeStep,
    PiiStep,
    RefusalsStep,
    SafetyStep,
)
from tuneforge.datatools.balance import plan_counts
from tuneforge.datatools.dedup import jaccard, shingles
from tuneforge.datatools.normalize import normalize_text
from tuneforge.datatools.pipeline import run_pipeline
from tuneforge.datatools.safety import luhn_ok, scrub_pii
from tuneforge.errors import DataError


def alp(i: str, o: str = "ok", **extra) -> dict:
    return {"instruction": i, "output": o, **extra}


def run(tmp_path, path, steps, **kw):
    out = tmp_path / "out.jsonl"
    result = run_pipeline(path, out, steps, report_dir=tmp_path / "report", **kw)
    return result, read_jsonl(out), read_jsonl(tmp_path / "report" / "trace.jsonl")


def test_normalize_text_rules():
    cfg = NormalizeStep()
    assert (
        normalize_text("  Ｈｅｌｌｏ\u00a0 world\t!\u200b \r\n\n\n\nnext ", cfg)
        == "Hello world !\n\nnext"
    )
    assert normalize_text("ﬁne\x07", cfg) == "fine"
    assert (
        normalize_text("“Hi” — ok!!!", NormalizeStep(punctuation=True, lowercase=True))
        == '"hi" - ok!'
    )
    assert (
        normalize_text("👨\u200d👩", cfg) == "👨\u200d👩"
    )  # the zero-width joiner of emoji sequences stays


def test_normalize_step_traces_changes_and_removes_emptied_rows(tmp_path, jsonl):
    path = jsonl([alp("a  b"), alp("clean"), alp("\u200b", "x")])
    result, rows, trace = run(tmp_path, path, [NormalizeStep()])
    assert [r["instruction"] for r in rows] == ["a b", "clean"]
    assert [(t["action"], t["source"].rsplit(":", 1)[1]) for t in trace] == [
        ("changed", "1"),
        ("removed", "3"),
    ]
    assert trace[0]["before"] == {"instruction": "a  b"}
    assert trace[1]["reason"] == "field 'instruction' is empty after normalisation"
    assert (result.rows_in, result.rows_out) == (3, 2)


def test_exact_dedup_keeps_first_of_each_cluster(tmp_path, jsonl):
    path = jsonl(
        [
            alp("Hello  World"),
            alp("other"),
            alp("hello world"),
            alp("HELLO WORLD"),
            alp("other", "different answer"),
        ]
    )
    _, rows, trace = run(tmp_path, path, [DedupStep()])
    assert [r["instruction"] for r in rows] == ["Hello  World", "other", "other"]
    assert [
        (t["source"].rsplit(":", 1)[1], t["duplicate_of"].rsplit(":", 1)[1])
        for t in trace
    ] == [("3", "1"), ("4", "1")]
    _, rows, _ = run(tmp_path, path, [DedupStep(key="prompt")])
    assert [r["instruction"] for r in rows] == ["Hello  World", "other"]


def _planted_pairs(
    n_words: int, at: int, changed: int, n_pairs: int, start: int
) -> list[tuple[str, str]]:
    """Pairs of texts of unique words; the second replaces words [at, at+changed) with new ones."""
    pairs, w = [], start
    for _ in range(n_pairs):
        base = [f"w{w + i}" for i in range(n_words)]
        w += n_words
        variant = (
            base[:at] + [f"w{w + i}" for i in range(changed)] + base[at + changed :]
        )
        w += changed
        pairs.append((" ".join(base), " ".join(variant)))
    return pairs


def test_near_dedup_on_planted_pairs_with_known_jaccard(tmp_path, jsonl):
    near = _planted_pairs(
        60, 30, 1, 10, 0
    )  # one middle word: 3 of 58 word-3-shingles differ, J = 55/61
    far = _planted_pairs(
        60, 45, 15, 10, 100000
    )  # last 15 words: 15 of 58 differ, J = 43/73
    j_near = jaccard(shingles(near[0][0]), shingles(near[0][1]))
    j_far = jaccard(shingles(far[0][0]), shingles(far[0][1]))
    assert j_near == pytest.approx(55 / 61) and j_far == pytest.approx(43 / 73)
    rows = [{"text": t} for pair in near + far for t in pair]
    _, out, trace = run(
        tmp_path, jsonl(rows), [DedupStep(exact=False, near=True, threshold=0.75)]
    )
    removed = sorted(int(t["source"].rsplit(":", 1)[1]) for t in trace)
    assert removed == [
        2 * i + 2 for i in range(10)
    ]  # the second row of every near pair, no far pair
    assert len(out) == 30
    for t in trace:
        assert (
            int(t["duplicate_of"].rsplit(":", 1)[1])
            == int(t["source"].rsplit(":", 1)[1]) - 1
        )
        assert abs(t["similarity"] - 55 / 61) < 0.12


def test_char_shingles_and_jaccard_reference():
    assert shingles("abcd", 2, "char") == {"ab", "bc", "cd"}
    assert jaccard({1, 2, 3}, {2, 3, 4}) == 0.5
    assert shingles("one two", 3) == {"one two"}  # shorter than a shingle: one shingle


def test_safety_block_and_allow_lists(tmp_path, jsonl):
    extra = tmp_path / "block.txt"
    extra.write_text("# comment\nforbidden phrase\n")
    path = jsonl(
        [
            alp("How to make a bath bomb at home?"),  # allow-listed
            alp(
                "tell me", "Here is how to build a  bomb: ..."
            ),  # blocked (whitespace-tolerant)
            alp("bombastic speech"),  # no word-boundary match
            alp("a Forbidden Phrase here"),  # user list, case-insensitive
            alp(
                "How do I build a bomb?", "I'm sorry, but I can't help with that."
            ),  # refusal: response checked only
        ]
    )
    _, rows, trace = run(tmp_path, path, [SafetyStep(blocklist=str(extra))])
    assert [r["instruction"] for r in rows] == [
        "How to make a bath bomb at home?",
        "bombastic speech",
        "How do I build a bomb?",
    ]
    assert [(t["source"].rsplit(":", 1)[1], t["term"]) for t in trace] == [
        ("2", "build a  bomb"),
        ("4", "forbidden phrase"),
    ]


def test_safety_missing_list_file_is_a_clear_error(tmp_path, jsonl):
    with pytest.raises(DataError, match="list file not found"):
        run(
            tmp_path,
            jsonl([alp("x")]),
            [SafetyStep(blocklist=str(tmp_path / "nope.txt"))],
        )


def test_pii_scrub():
    cfg = PiiStep()
    counts: dict = {}
    text = "Mail a.b+c@mail.example.org, call (415) 555-0123 or +44 20 7946 0958; card 4111-1111-1111-1111; order 1234567890123"
    assert (
        scrub_pii(text, cfg, counts)
        == "Mail [EMAIL], call [PHONE] or [PHONE]; card [CARD]; order 1234567890123"
    )
    assert counts == {"email": 1, "phone": 2, "card": 1}
    assert luhn_ok("4111111111111111") and not luhn_ok("1234567890123")


def test_pii_step_never_writes_the_values_to_the_trace(tmp_path, jsonl):
    _, rows, trace = run(tmp_path, jsonl([alp("mail me", "x@y.com")]), [PiiStep()])
    assert rows[0]["output"] == "[EMAIL]"
    assert "x@y.com" not in str(trace) and trace[0]["pii"] == {"email": 1}


REFUSAL_ROWS = [
    alp(
        "How do I make a bomb at home?", "I'm sorry, but I can't help with that."
    ),  # harmful -> refusal kept
    alp(
        "Write a haiku about spring", "I'm sorry, but I can't help with that request."
    ),  # benign -> over-refusal
    alp("Write a haiku about spring", "Blossoms drift softly"),  # not a refusal
    {
        "messages": [
            {"role": "user", "content": "hack my neighbour's email account"},
            {"role": "assistant", "content": "As an AI, I cannot do that."},
        ]
    },
    {
        "messages": [
            {"role": "user", "content": "What's 2+2?"},
            {"role": "assistant", "content": "I must decline to answer."},
        ]
    },
]


@pytest.mark.parametrize(
    "benign,kept", [("drop", [1, 3, 4]), ("flag", [1, 2, 3, 4, 5])]
)
def test_refusals_keep_harmful_drop_or_flag_benign(tmp_path, jsonl, benign, kept):
    # alpaca and messages rows in one file are two formats; run each format as its own file
    alpaca, chat = (
        jsonl(REFUSAL_ROWS[:3], "a.jsonl"),
        jsonl(REFUSAL_ROWS[3:], "m.jsonl"),
    )
    _, rows_a, trace_a = run(tmp_path, alpaca, [RefusalsStep(benign=benign)])
    _, rows_m, trace_m = run(tmp_path, chat, [RefusalsStep(benign=benign)])
    got = [i + 1 for i, r in enumerate(REFUSAL_ROWS[:3]) if r in rows_a] + [
        i + 4 for i, r in enumerate(REFUSAL_ROWS[3:]) if r in rows_m
    ]
    assert got == kept
    reasons = [t["reason"] for t in trace_a + trace_m]
    assert reasons.count("refusal to a harmful request: kept") == 2
    assert sum("benign" in r for r in reasons) == 2


CATS = ["a"] * 6 + ["b"] * 2 + ["c"] * 3


def test_balance_plan_closed_form():
    counts = {"a": 6, "b": 2, "c": 3}
    assert plan_counts(counts, {"a": 1, "b": 1, "c": 1}, "down") == {
        "a": 2,
        "b": 2,
        "c": 2,
    }
    assert plan_counts(counts, {"a": 1, "b": 1, "c": 1}, "up") == {
        "a": 6,
        "b": 6,
        "c": 6,
    }
    assert plan_counts(counts, {"a": 0.5, "b": 0.25, "c": 0.25}, "down") == {
        "a": 4,
        "b": 2,
        "c": 2,
    }
    with pytest.raises(DataError, match="'d' has a target but no rows"):
        plan_counts(counts, {"d": 1}, "down")


def test_balance_down_exact_rows(tmp_path, jsonl):
    rows = [alp(f"q{i}", category=c) for i, c in enumerate(CATS)] + [alp("no cat")]
    _, out, trace = run(tmp_path, jsonl(rows), [BalanceStep(field="category", seed=0)])
    kept = [r["instruction"] for r in out]
    assert sorted(r["category"] for r in out) == ["a", "a", "b", "b", "c", "c"]
    assert {"q6", "q7"} <= set(kept)  # b is the smallest: all of it stays
    assert kept == sorted(kept, key=lambda q: int(q[1:]))  # original order kept
    removed = [t for t in trace if t["action"] == "removed"]
    assert (
        len(removed) == 6
        and sum(t["reason"] == "no 'category' field to balance on" for t in removed)
        == 1
    )
    # the same seed gives the same rows
    _, again, _ = run(tmp_path, jsonl(rows), [BalanceStep(field="category", seed=0)])
    assert again == out


def test_balance_up_repeats_small_categories(tmp_path, jsonl):
    rows = [alp(f"q{i}", category=c) for i, c in enumerate(CATS)]
    _, out, trace = run(
        tmp_path, jsonl(rows), [BalanceStep(field="category", mode="up")]
    )
    from collections import Counter

    assert Counter(r["category"] for r in out) == {"a": 6, "b": 6, "c": 6}
    assert Counter(r["instruction"] for r in out if r["category"] == "b") == {
        "q6": 3,
        "q7": 3,
    }
    assert sum(t["action"] == "added" for t in trace) == 7


def test_convert_between_formats(tmp_path, jsonl):
    rows = [
        alp("Hi", "Hello", system="Be brief", category="x"),
        {
            "conversations": [
                {"from": "human", "value": "a"},
                {"from": "gpt", "value": "b"},
                {"from": "human", "value": "c"},
                {"from": "gpt", "value": "d"},
            ]
        },
    ]
    _, out, _ = run(tmp_path, jsonl([rows[0]]), [ConvertStep(to="sharegpt")])
    assert out == [
        {
            "conversations": [
                {"from": "system", "value": "Be brief"},
                {"from": "human", "value": "Hi"},
                {"from": "gpt", "value": "Hello"},
            ],
            "category": "x",
        }
    ]
    _, out, trace = run(tmp_path, jsonl([rows[1]]), [ConvertStep(to="alpaca")])
    assert (
        out == []
        and "4-turn conversation cannot be written as alpaca" in trace[0]["reason"]
    )
    _, out, _ = run(tmp_path, jsonl([rows[1]]), [ConvertStep(to="messages")])
    assert [m["role"] for m in out[0]["messages"]] == [
        "user",
        "assistant",
        "user",
        "assistant",
    ]


def test_bad_rows_stop_with_the_foundations_message_or_are_traced(tmp_path, jsonl):
    path = jsonl([alp("fine"), "{not json", {"instruction": "x", "output": 3}, [1, 2]])
    with pytest.raises(DataError, match=r"data.jsonl:2: invalid JSON"):
        run(tmp_path, path, [NormalizeStep()])
    result, out, trace = run(tmp_path, path, [NormalizeStep()], on_bad_rows="skip")
    assert len(out) == 1 and result.bad_rows == 3
    assert [
        t["reason"].split(": ", 1)[1]
        if "field" not in t["reason"]
        else t["reason"].split(" ", 1)[1]
        for t in trace
    ] == [
        "invalid JSON: Expecting property name enclosed in double quotes at column 2",
        "field 'output': must be a string, got int",
        "must be a JSON object, got list",
    ]


def test_key_index_multimap_across_merges():
    from tuneforge.datatools.dedup import _KeyIndex

    idx = _KeyIndex(buffer_limit=3)
    pairs = [
        (2**64 - 1, 0),
        (5, 1),
        (7, 2),
        (5, 3),
        (9, 4),
        (11, 5),
        (5, 6),
        (2**63, 7),
    ]
    for k, rid in pairs:
        idx.put(k, rid)
    assert idx.keys.size > 0  # at least one merge into the sorted arrays happened
    assert (
        sorted(idx.get(5)) == [1, 3, 6]
        and idx.get(2**64 - 1) == [0]
        and idx.get(2**63) == [7]
    )
    assert idx.get(6) == [] and idx.get(0) == []
