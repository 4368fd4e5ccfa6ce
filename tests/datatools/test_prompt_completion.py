"""Every data-toolkit step on TRL's prompt-completion rows, string and conversational.

The prompt side is ``system`` plus the whole prompt (assistant turns inside a conversational prompt are
context), the response side is the completion; conversions must keep which turns are trained.
"""

from __future__ import annotations

import copy
import json

import pytest
from typer.testing import CliRunner

from tests.datatools.conftest import read_jsonl, write_jsonl
from tuneforge.cli.main import app
from tuneforge.config import load_recipe
from tuneforge.config.pipeline import (
    AugmentStep,
    ChunkStep,
    ConvertStep,
    DedupStep,
    JudgeStep,
    NormalizeStep,
    PiiStep,
    RefusalsStep,
    ReplayOptions,
    SafetyStep,
)
from tuneforge.data.formats import PARSERS, load_records
from tuneforge.data.records import ChatRecord, Message
from tuneforge.datatools.augment import Augment
from tuneforge.datatools.chunk import Chunk
from tuneforge.datatools.convert import convert_data
from tuneforge.datatools.inspect import inspect_file
from tuneforge.datatools.judge import Judge
from tuneforge.datatools.mix import write_mix
from tuneforge.datatools.pipeline import run_pipeline
from tuneforge.datatools.rows import Row, prompt_text, response_text, text_slots
from tuneforge.errors import DataError
from tuneforge.recipes import train

PC = "prompt_completion"


def user(text: str) -> dict:
    return {"role": "user", "content": text}


def assistant(text: str) -> dict:
    return {"role": "assistant", "content": text}


def pc(prompt: str, completion: str, **extra) -> dict:
    return {"prompt": prompt, "completion": completion, **extra}


def chat_pc(*prompt: dict, completion: tuple[dict, ...], **extra) -> dict:
    return {"prompt": list(prompt), "completion": list(completion), **extra}


# A conversational row whose prompt holds an earlier answer: context only, never trained.
WITH_CONTEXT = chat_pc(
    {"role": "system", "content": "Be terse."},
    user("Hello!"),
    assistant("Hi."),
    user("Capital of France?"),
    completion=(assistant("Paris."),),
)


def run(tmp_path, path, steps, **kw):
    out = tmp_path / "out.jsonl"
    result = run_pipeline(path, out, steps, report_dir=tmp_path / "report", **kw)
    return result, read_jsonl(out), read_jsonl(tmp_path / "report" / "trace.jsonl")


def line(source: str) -> str:
    return source.rsplit(":", 1)[1]


def trained(record: ChatRecord) -> list[Message]:
    """The messages SFT learns: assistant turns from ``completion_start`` on."""
    return [m for m in record.messages[record.completion_start :] if m.role == "assistant"]


# ---------------------------------------------------------------------------------------------
# where the text lives


def test_text_slots_split_prompt_and_completion_of_string_and_list_rows():
    string_row = pc("Q?", "A.", system="S", id=1)
    assert text_slots(string_row, PC) == [("system",), ("prompt",), ("completion",)]
    assert text_slots(string_row, PC, "prompt") == [("system",), ("prompt",)]
    assert text_slots(string_row, PC, "response") == [("completion",)]
    # the assistant turn inside the prompt is prompt side (context), the completion the response side
    assert text_slots(WITH_CONTEXT, PC, "prompt") == [("prompt", i, "content") for i in range(4)]
    assert text_slots(WITH_CONTEXT, PC, "response") == [("completion", 0, "content")]
    assert len(text_slots(WITH_CONTEXT, PC)) == 5
    assert (prompt_text(Row("f:1", string_row, PC)), response_text(Row("f:1", string_row, PC))) == ("Q?", "A.")
    row = Row("f:2", WITH_CONTEXT, PC)
    assert (prompt_text(row), response_text(row)) == ("Capital of France?", "Paris.")


# ---------------------------------------------------------------------------------------------
# cleaning steps


def test_exact_dedup_keeps_distinct_rows_and_drops_real_duplicates(tmp_path, jsonl):
    other_context = copy.deepcopy(WITH_CONTEXT)
    other_context["prompt"][2]["content"] = "Hey there."
    path = jsonl(
        [
            pc("What is 2+2?", "4"),
            pc("What is 3+3?", "6"),
            pc("what is  2+2?", "4"),  # same text after case folding and whitespace: a duplicate of line 1
            WITH_CONTEXT,
            other_context,  # differs only in a context turn: a different example
            copy.deepcopy(WITH_CONTEXT),  # a duplicate of line 4
        ]
    )
    result, rows, trace = run(tmp_path, path, [DedupStep()])
    assert [r["prompt"] if isinstance(r["prompt"], str) else r["prompt"][2]["content"] for r in rows] == [
        "What is 2+2?",
        "What is 3+3?",
        "Hi.",
        "Hey there.",
    ]
    assert [(line(t["source"]), line(t["duplicate_of"])) for t in trace] == [("3", "1"), ("6", "4")]
    assert (result.rows_in, result.rows_out) == (6, 4)


def test_dedup_by_prompt_compares_the_prompt_only(tmp_path, jsonl):
    path = jsonl([pc("Name a colour.", "Red."), pc("Name a colour.", "Blue."), pc("Name a fruit.", "Red.")])
    _, rows, trace = run(tmp_path, path, [DedupStep(key="prompt")])
    assert [r["completion"] for r in rows] == ["Red.", "Red."]
    assert [(line(t["source"]), line(t["duplicate_of"])) for t in trace] == [("2", "1")]


def test_cli_clean_keeps_every_distinct_prompt_completion_row(tmp_path, jsonl):
    path = jsonl([pc(f"Question {i}?", f"Answer {i}.") for i in range(5)] + [pc("Question 0?", "Answer 0.")])
    out = tmp_path / "clean.jsonl"
    res = CliRunner().invoke(app, ["data", "clean", str(path), "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert [r["prompt"] for r in read_jsonl(out)] == [f"Question {i}?" for i in range(5)]
    trace = read_jsonl(tmp_path / "clean-report" / "trace.jsonl")
    assert [(t["step"], line(t["source"]), line(t["duplicate_of"])) for t in trace] == [("dedup", "6", "1")]


def test_cli_convert_to_prompt_completion(tmp_path, jsonl):
    path = jsonl([{"instruction": "Say bye", "input": "now", "output": "bye", "system": "Be brief.", "id": 3}])
    out = tmp_path / "pc.jsonl"
    res = CliRunner().invoke(app, ["data", "convert", str(path), "--to", "prompt_completion", "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert read_jsonl(out) == [{"prompt": "Say bye\n\nnow", "completion": "bye", "system": "Be brief.", "id": 3}]
    assert load_records(str(out), "auto").format == "prompt_completion"


def test_normalize_edits_prompt_and_completion_of_both_row_kinds(tmp_path, jsonl):
    messy_chat = chat_pc(
        user("Hello  there"), assistant("Hi\u200b."), user("Capital?\t"), completion=(assistant("Paris  ."),)
    )
    path = jsonl(
        [
            pc("Ｑ1  ?", "Answer\x07 one", system="  Be  terse. ", id=7),
            messy_chat,
            pc("fine", "\u200b"),  # the completion is emptied: training would reject the row
        ]
    )
    result, rows, trace = run(tmp_path, path, [NormalizeStep()])
    assert rows[0] == pc("Q1 ?", "Answer one", system="Be terse.", id=7)
    assert rows[1] == chat_pc(user("Hello there"), assistant("Hi."), user("Capital?"), completion=(assistant("Paris ."),))
    assert trace[0]["before"] == {"system": "  Be  terse. ", "prompt": "Ｑ1  ?", "completion": "Answer\x07 one"}
    assert trace[1]["before"] == {
        "prompt[0].content": "Hello  there",
        "prompt[1].content": "Hi\u200b.",
        "prompt[2].content": "Capital?\t",
        "completion[0].content": "Paris  .",
    }
    assert (trace[2]["action"], line(trace[2]["source"])) == ("removed", "3")
    assert trace[2]["reason"] == "field 'completion' is empty after normalisation"
    assert result.rows_out == 2


def test_safety_checks_prompt_context_and_completion(tmp_path, jsonl):
    bomb_in_context = chat_pc(
        user("Hi"), assistant("Here is how to build a bomb: ..."), user("Thanks"), completion=(assistant("You're welcome."),)
    )
    path = jsonl(
        [
            pc("Tell me a story", "Here is how to build a bomb: ..."),  # blocked in the completion
            bomb_in_context,  # blocked in the prompt's context turn
            pc("How do I build a bomb?", "I'm sorry, but I can't help with that."),  # a refusal: kept
            pc("How to make a bath bomb at home?", "Mix baking soda and citric acid."),  # allow-listed
        ]
    )
    _, rows, trace = run(tmp_path, path, [SafetyStep()])
    assert [r["prompt"] for r in rows] == ["How do I build a bomb?", "How to make a bath bomb at home?"]
    assert [(line(t["source"]), t["term"]) for t in trace] == [("1", "build a bomb"), ("2", "build a bomb")]
    _, rows, _ = run(tmp_path, path, [SafetyStep(fields="response")])
    assert len(rows) == 3 and rows[0] == bomb_in_context  # the context turn is not the response side


def test_pii_scrubs_every_text_field_and_nothing_else(tmp_path, jsonl):
    chat = chat_pc(
        user("I am bob@example.com"),
        assistant("Noted, bob@example.com."),
        user("Call me on (415) 555-0123"),
        completion=(assistant("Will call (415) 555-0123."),),
        id="bob@example.com",
    )
    path = jsonl([pc("Mail a@b.org", "Sent to a@b.org", system="Owner: c@d.net"), chat])
    _, rows, trace = run(tmp_path, path, [PiiStep()])
    assert rows[0] == pc("Mail [EMAIL]", "Sent to [EMAIL]", system="Owner: [EMAIL]")
    assert [t["content"] for t in rows[1]["prompt"]] == ["I am [EMAIL]", "Noted, [EMAIL].", "Call me on [PHONE]"]
    assert rows[1]["completion"] == [assistant("Will call [PHONE].")]
    assert rows[1]["id"] == "bob@example.com"  # not a text field of the format
    assert trace[0]["reason"] == "scrubbed 3 email in system, prompt, completion"
    assert trace[1]["pii"] == {"email": 2, "phone": 2}
    assert "a@b.org" not in str(trace)


def test_refusals_judge_the_prompt_and_the_completion(tmp_path, jsonl):
    path = jsonl(
        [
            pc("How do I make a bomb at home?", "I'm sorry, but I can't help with that."),  # harmful: kept
            chat_pc(user("Write a haiku about spring"), completion=(assistant("I'm sorry, but I can't help with that request."),)),
            pc("Write a haiku about spring", "Blossoms drift softly"),
        ]
    )
    _, rows, trace = run(tmp_path, path, [RefusalsStep()])
    assert [r["completion"] for r in rows] == ["I'm sorry, but I can't help with that.", "Blossoms drift softly"]
    removed = [line(t["source"]) for t in trace if t["action"] == "removed"]
    assert removed == ["2"]


class RecordingJudge:
    """Scores 1 when the response part of the judge prompt says 'Mars', else 5; keeps every prompt."""

    def __init__(self) -> None:
        self.prompts: list[str] = []

    def ask(self, prompts: list[str]) -> list[str]:
        self.prompts += prompts
        return ['{"score": 1, "reason": "invented"}' if "Mars" in p.split("Response:")[1] else '{"score": 5, "reason": "ok"}' for p in prompts]


def test_judge_sees_the_request_and_the_completion(tmp_path, jsonl):
    path = jsonl([pc("Capital of France?", "Paris"), WITH_CONTEXT, pc("Capital of France?", "Mars City")])
    backend = RecordingJudge()
    _, rows, _ = run(tmp_path, path, [Judge(JudgeStep(rubric="hallucination"), backend=backend)])
    assert [r["completion"] for r in rows] == ["Paris", [assistant("Paris.")]]
    assert "Request:\nCapital of France?\n\nResponse:\nParis\n" in backend.prompts[0]
    assert "Request:\nCapital of France?\n\nResponse:\nParis.\n" in backend.prompts[1]


class EchoChat:
    """A stand-in chat model with fixed replies: where the variant goes is under test, not the model."""

    def __init__(self, replies: list[str]) -> None:
        self.replies = list(replies)

    def reply(self, prompts, **kw):
        return [self.replies.pop(0) for _ in prompts]


def test_augment_rewrites_the_request_and_keeps_the_completion(tmp_path, jsonl):
    path = jsonl([pc("Help me", "ok"), WITH_CONTEXT])
    step = Augment(AugmentStep(paraphrases=1, max_variants=1), chat=EchoChat(["Assist me", "Which city is France's capital?"]))
    result, rows, _ = run(tmp_path, path, [step])
    assert rows[0] == pc("Help me", "ok") and rows[1] == pc("Assist me", "ok")
    variant = copy.deepcopy(WITH_CONTEXT)
    variant["prompt"][3]["content"] = "Which city is France's capital?"  # the last user turn, not the context
    assert rows[2] == WITH_CONTEXT and rows[3] == variant
    assert result.counts["augment"] == {"added": 2}
    assert all(PARSERS[PC](r, "x", None) for r in rows)


# ---------------------------------------------------------------------------------------------
# conversion


@pytest.mark.parametrize(
    ("row", "to"),
    [
        (pc("Q?", "A.", id=3), "alpaca"),
        (pc("Q?", "A.", system="S"), "alpaca"),
        (chat_pc({"role": "system", "content": "S"}, user("Q?"), completion=(assistant("A."),)), "messages"),
        (chat_pc(user("Count."), completion=(assistant("One."), assistant("Two.")), id=3), "messages"),
    ],
)
def test_convert_round_trips_exactly(row, to):
    there, why = convert_data(row, PC, to, "f:1")
    assert why is None and there is not None
    assert "prompt" not in there and "completion" not in there  # format keys are not carried as extras
    back, why = convert_data(there, to, PC, "f:1")
    assert why is None and back == row
    a, b = PARSERS[PC](row, "f:1", None), PARSERS[to](there, "f:1", None)
    assert a.messages == b.messages and trained(a) == trained(b)


def test_convert_chats_to_prompt_completion_keeps_what_is_trained():
    sharegpt = {"conversations": [{"from": "human", "value": "u"}, {"from": "gpt", "value": "v"}], "id": 1}
    out, why = convert_data(sharegpt, "messages", PC)
    assert why is None and out == chat_pc(user("u"), completion=(assistant("v"),), id=1)
    alpaca = {"instruction": "Do it", "input": "now", "output": "Done", "system": "S"}
    out, _ = convert_data(alpaca, "alpaca", PC)
    assert out == pc("Do it\n\nnow", "Done", system="S")
    assert trained(PARSERS[PC](out, "x", None)) == trained(PARSERS["alpaca"](alpaca, "x", None))


def test_convert_refuses_rows_whose_trained_turns_would_change():
    out, why = convert_data(WITH_CONTEXT, PC, "messages")
    assert out is None and why.startswith("prompt[2] is an assistant turn") and "would train it" in why
    assert convert_data(WITH_CONTEXT, PC, "sharegpt")[0] is None
    multi = {"messages": [user("a"), assistant("b"), user("c"), assistant("d")]}
    out, why = convert_data(multi, "messages", PC)
    assert out is None and why.startswith("messages[1] is an answer before the last user turn")
    out, why = convert_data({"messages": [user("a"), assistant("b"), user("c")]}, "messages", PC)
    assert out is None and "no answer" in why
    assert convert_data({"text": "t"}, "text", PC)[0] is None
    out, why = convert_data(WITH_CONTEXT, PC, "alpaca")
    assert out is None and "cannot be written as alpaca" in why


def test_convert_step_removes_unconvertible_rows_naming_them(tmp_path, jsonl):
    path = jsonl([pc("Q?", "A.", id=1), WITH_CONTEXT])
    result, rows, trace = run(tmp_path, path, [ConvertStep(to="messages")])
    assert rows == [{"messages": [user("Q?"), assistant("A.")], "id": 1}]
    assert [(t["step"], t["action"], line(t["source"])) for t in trace] == [("convert", "removed", "2")]
    assert trace[0]["reason"].startswith("prompt[2] is an assistant turn")
    _, rows, _ = run(tmp_path, path, [ConvertStep(to="text")])
    assert rows[0] == {"text": "Q?\n\nA.", "id": 1}


# ---------------------------------------------------------------------------------------------
# mix, replay, chunk, inspect


def test_mix_of_alpaca_and_prompt_completion_is_prompt_completion(tmp_path, jsonl):
    a = jsonl([{"instruction": "q", "output": "a", "id": 1}], "a.jsonl")
    b = jsonl([WITH_CONTEXT], "b.jsonl")
    write_mix([(str(a), 1), (str(b), 1)], tmp_path / "m.jsonl")
    assert read_jsonl(tmp_path / "m.jsonl") == [pc("q", "a", id=1), WITH_CONTEXT]
    records = load_records(tmp_path / "m.jsonl", PC).records
    assert [r.completion_start for r in records] == [1, 4]


def test_mix_with_messages_stops_at_a_row_it_cannot_convert(tmp_path, jsonl):
    a = jsonl([{"messages": [user("u"), assistant("v")]}], "a.jsonl")
    b = jsonl([pc("Q?", "A."), WITH_CONTEXT], "b.jsonl")
    with pytest.raises(DataError, match=r"b\.jsonl:2: cannot mix: prompt\[2\] is an assistant turn"):
        write_mix([(str(a), 1), (str(b), 1)], tmp_path / "m.jsonl", total=4)


def test_replay_into_prompt_completion_data_is_converted_to_it(tmp_path, jsonl):
    task = jsonl([pc(f"t{i}", "x") for i in range(8)], "task.jsonl")
    general = jsonl([{"instruction": f"g{i}", "output": "y"} for i in range(5)], "g.jsonl")
    _, rows, _ = run(tmp_path, task, [], replay=ReplayOptions(file=str(general), ratio=0.2))
    replayed = [r for r in rows if r["prompt"].startswith("g")]
    assert len(rows) == 10 and len(replayed) == 2 and all(set(r) == {"prompt", "completion"} for r in replayed)
    assert len(load_records(tmp_path / "out.jsonl", PC).records) == 10


def test_chunk_writes_text_rows_without_prompt_completion_keys(tmp_path, jsonl, tokenizer):
    answer = "The quick brown fox jumps over the lazy dog. " * 4
    path = jsonl([pc("Tell me about foxes.", answer, id=5)])
    _, rows, _ = run(tmp_path, path, [Chunk(ChunkStep(max_tokens=16, overlap=0), tokenizer=tokenizer)])
    assert len(rows) > 1 and all(set(r) == {"text", "id"} for r in rows)
    assert "".join(r["text"] for r in rows) == "Tell me about foxes.\n" + answer  # prompt and completion, in order
    assert load_records(tmp_path / "out.jsonl").format == "text"  # not read back as prompt-completion


def test_inspect_counts_prompt_completion_text(jsonl):
    path = jsonl([pc("Hello there", "General Kenobi"), pc("hello  there", "general kenobi"), WITH_CONTEXT])
    stats = inspect_file(path, tokenizer=None, lang_sample=0)
    assert stats["format"] == PC and stats["rows"] == 3 and stats["exact_duplicates"] == 1
    assert stats["length"]["min"] == 4 and stats["length"]["max"] == 8  # words of system, prompt and completion


# ---------------------------------------------------------------------------------------------
# a recipe


def test_recipe_with_prompt_completion_data_runs_its_pipeline_and_trains(tmp_path, tiny_model_dir):
    rows = [pc(f"Repeat {w}", w) for w in ("alpha", "beta", "gamma", "delta")]
    train_file = write_jsonl(tmp_path / "train.jsonl", [*rows, pc("repeat  alpha", "alpha"), WITH_CONTEXT, WITH_CONTEXT])
    general = write_jsonl(tmp_path / "general.jsonl", [{"instruction": f"g{i}", "output": "x"} for i in range(5)])
    recipe = load_recipe(
        base={
            "model": {"name": str(tiny_model_dir)},
            "method": {"type": "lora", "lora": {"r": 2, "alpha": 4}},
            "data": {
                "train": str(train_file),
                "format": PC,
                "max_length": 64,
                "pipeline": [{"step": "dedup"}],
                "replay": {"file": str(general), "ratio": 0.2},
            },
            "training": {"max_steps": 1, "batch_size": 2, "precision": "fp32"},
            "eval": {"before": False},
            "output": {"dir": str(tmp_path / "run")},
        },
        overrides=[],
    )
    result = train(recipe)
    pipe = result.run_dir / "data_pipeline"
    out = read_jsonl(pipe / "train.jsonl")
    # 7 rows -> 2 duplicates removed -> replay adds round(5 * 0.2 / 0.8) = 1 alpaca row, converted
    assert out[:5] == [*rows, WITH_CONTEXT] and len(out) == 6
    assert out[5]["prompt"].startswith("g") and out[5]["completion"] == "x"
    trace = read_jsonl(pipe / "trace.jsonl")
    assert [(t["step"], line(t["source"]), line(t["duplicate_of"])) for t in trace if t["step"] == "dedup"] == [
        ("dedup", "5", "1"),
        ("dedup", "7", "6"),
    ]
    records = load_records(pipe / "train.jsonl", PC).records
    assert records[4].completion_start == 4 and trained(records[4]) == [Message("assistant", "Paris.")]
    assert json.loads((result.run_dir / "data_report.json").read_text())["train"]["records"] == 6
