"""Augmentation, mixing/replay, splitting and chunking with exact expected outputs (templates: test_templates.py)."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from tests.datatools.conftest import read_jsonl
from tuneforge.config.pipeline import AugmentStep, ChunkStep, ReplayOptions
from tuneforge.datatools.augment import (
    Augment,
    load_lexicon,
    synonym_variant,
)
from tuneforge.datatools.chunk import chunk_text
from tuneforge.datatools.mix import parse_spec, plan_mix, replay_count, write_mix
from tuneforge.datatools.pipeline import run_pipeline
from tuneforge.datatools.split import split_file
from tuneforge.errors import DataError


def test_synonym_variant_is_seeded_and_keeps_capitals():
    lex = {"quick": ["fast"], "answer": ["reply"]}
    assert (
        synonym_variant("Quick answer please", lex, 1.0, random.Random(0))
        == "Fast reply please"
    )
    assert synonym_variant("nothing here", lex, 1.0, random.Random(0)) == "nothing here"
    assert "help" in load_lexicon() and "assist" in load_lexicon()["help"]


class EchoChat:
    """A stand-in chat model with fixed replies: the variant logic (cap, dedup), not the model, is under test."""

    def __init__(self, replies):
        self.replies = list(replies)

    def reply(self, prompts, **kw):
        return [self.replies.pop(0) for _ in prompts]


def test_augment_caps_variants_and_dedups_against_originals(tmp_path, jsonl):
    path = jsonl(
        [
            {"instruction": "Help me", "output": "ok"},
            {"instruction": "Assist me", "output": "ok"},
        ]
    )
    # paraphrase replies: the first duplicates the other original, the second is new, the third is over the cap
    chat = EchoChat(
        ["assist ME", "Support me please", "Third", "help me", "Aid me now", "x"]
    )
    step = Augment(AugmentStep(paraphrases=3, max_variants=1), chat=chat)
    res = run_pipeline(path, tmp_path / "o.jsonl", [step], report_dir=tmp_path / "r")
    out = [r["instruction"] for r in read_jsonl(tmp_path / "o.jsonl")]
    assert out == ["Help me", "Support me please", "Assist me", "Aid me now"]
    assert res.counts["augment"] == {"added": 2}


def test_augment_synonyms_end_to_end(tmp_path, jsonl):
    path = jsonl([{"instruction": "Explain the problem quickly", "output": "ok"}])
    run_pipeline(
        path,
        tmp_path / "o.jsonl",
        [AugmentStep(synonyms=2, synonym_rate=1.0, max_variants=2)],
        report_dir=tmp_path / "r",
    )
    out = [r["instruction"] for r in read_jsonl(tmp_path / "o.jsonl")]
    assert (
        out[0] == "Explain the problem quickly" and len(out) == 3 and len(set(out)) == 3
    )
    assert all(o != out[0] and len(o.split()) >= 4 for o in out[1:])


def test_mix_proportions_and_no_repeats_by_default(tmp_path, jsonl):
    a = jsonl([{"text": f"a{i}"} for i in range(10)], "a.jsonl")
    b = jsonl([{"text": f"b{i}"} for i in range(10)], "b.jsonl")
    assert plan_mix([10, 10], [0.7, 0.3], None) == [
        10,
        4,
    ]  # largest mix with no repeated row: 10 / 0.7 = 14
    res = write_mix([(str(a), 0.7), (str(b), 0.3)], tmp_path / "m.jsonl", seed=1)
    rows = [r["text"] for r in read_jsonl(tmp_path / "m.jsonl")]
    assert (
        res["rows"] == 14
        and sum(r.startswith("a") for r in rows) == 10
        and len(set(rows)) == 14
    )
    write_mix([(str(a), 0.5), (str(b), 0.5)], tmp_path / "m2.jsonl", total=30)
    counts = Counter(r["text"][0] for r in read_jsonl(tmp_path / "m2.jsonl"))
    assert counts == {"a": 15, "b": 15}
    with pytest.raises(DataError, match="PATH:WEIGHT"):
        parse_spec("a.jsonl")


def test_mix_converts_different_formats_to_messages(tmp_path, jsonl):
    a = jsonl([{"instruction": "q", "output": "a"}], "a.jsonl")
    b = jsonl(
        [
            {
                "messages": [
                    {"role": "user", "content": "u"},
                    {"role": "assistant", "content": "v"},
                ]
            }
        ],
        "b.jsonl",
    )
    write_mix([(str(a), 1), (str(b), 1)], tmp_path / "m.jsonl")
    assert all("messages" in r for r in read_jsonl(tmp_path / "m.jsonl"))


def test_replay_makes_up_the_ratio(tmp_path, jsonl):
    task = jsonl(
        [{"instruction": f"t{i}", "output": "x"} for i in range(8)], "task.jsonl"
    )
    general = jsonl(
        [
            {
                "messages": [
                    {"role": "user", "content": f"g{i}"},
                    {"role": "assistant", "content": "y"},
                ]
            }
            for i in range(5)
        ],
        "g.jsonl",
    )
    assert replay_count(8, 0.2) == 2
    res = run_pipeline(
        task,
        tmp_path / "o.jsonl",
        [],
        report_dir=tmp_path / "r",
        replay=ReplayOptions(file=str(general), ratio=0.2),
    )
    rows = read_jsonl(tmp_path / "o.jsonl")
    assert (
        len(rows) == 10 and sum(r["instruction"].startswith("g") for r in rows) == 2
    )  # converted to alpaca
    assert res.counts["replay"] == {"added": 2}


def test_split_stratified_exact_counts(tmp_path, jsonl):
    rows = [{"text": f"r{i}", "cat": "a" if i < 20 else "b"} for i in range(30)]
    res = split_file(jsonl(rows), tmp_path / "s", 0.1, stratify="cat", seed=3)
    val = read_jsonl(tmp_path / "s" / "val.jsonl")
    train = read_jsonl(tmp_path / "s" / "train.jsonl")
    assert Counter(r["cat"] for r in val) == {"a": 2, "b": 1} and len(train) == 27
    assert {r["text"] for r in val}.isdisjoint(r["text"] for r in train)
    assert res["strata"] == {"a": 20, "b": 10}
    assert (
        split_file(jsonl(rows), tmp_path / "s2", 0.1, stratify="cat", seed=3)["val"]
        == 3
    )
    assert read_jsonl(tmp_path / "s2" / "val.jsonl") == val  # seeded


def test_chunk_windows_are_exact_substrings_with_overlap(tokenizer):
    text = "The quick brown fox jumps over the lazy dog. " * 6
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    chunks = chunk_text(text, tokenizer, 16, 4)
    lens = [len(tokenizer(c, add_special_tokens=False)["input_ids"]) for c in chunks]
    assert (
        all(c in text for c in chunks)
        and chunks[0] == text[: len(chunks[0])]
        and text.endswith(chunks[-1])
    )
    assert (
        max(lens) <= 17
    )  # a window re-tokenised alone may merge differently by one token at most
    assert len(chunks) == -(-(len(ids) - 4) // 12)  # ceil((n - overlap) / stride)
    assert chunk_text("short", tokenizer, 16, 4) == ["short"]
    with pytest.raises(ValueError, match="overlap"):
        ChunkStep(max_tokens=4, overlap=4)


def test_mix_traces_left_out_and_repeated_rows(tmp_path, jsonl):
    a = jsonl([{"text": f"a{i}"} for i in range(4)], "a.jsonl")
    b = jsonl([{"text": f"b{i}"} for i in range(2)], "b.jsonl")
    res = write_mix([(str(a), 0.5), (str(b), 0.5)], tmp_path / "m.jsonl", total=6)
    trace = read_jsonl(tmp_path / "m-report" / "trace.jsonl")
    assert sum(t["action"] == "removed" for t in trace) == 1  # a gives 3 of 4
    assert (
        sum(t["action"] == "added" for t in trace) == 1
    )  # b gives 3 from 2: one repeat
    assert res["rows"] == 6 and (tmp_path / "m-report" / "report.html").is_file()
