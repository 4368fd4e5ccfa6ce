"""TRL's prompt-completion rows as sft data: parsing, bad rows, detection against KTO rows, masks, a whole run.

The loss mask is checked against two references that do not use tuneforge's renderer: the
tokenizer's own ``apply_chat_template`` (the prompt rendered with the generation prompt is the
untrained prefix) and TRL's public ``trl.apply_chat_template``, which splits a conversational
prompt-completion row into the prompt text and the completion text TRL trains.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import trl

from tuneforge.config import load_recipe
from tuneforge.data.formats import load_records
from tuneforge.data.preference import UnpairedRecord, load_preference_records
from tuneforge.data.records import ChatRecord, Message
from tuneforge.data.render import IGNORE_INDEX, render_chat
from tuneforge.errors import ConfigError, DataError
from tuneforge.recipes import train


def jsonl(tmp_path: Path, rows: list, name: str = "d.jsonl") -> Path:
    p = tmp_path / name
    p.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return p


def user(text: str) -> dict:
    return {"role": "user", "content": text}


def assistant(text: str) -> dict:
    return {"role": "assistant", "content": text}


STRING_ROW = {"prompt": "What is the capital of France?", "completion": "Paris."}
CONVERSATIONAL_ROW = {
    "prompt": [{"role": "system", "content": "You are terse."}, user("Hello!"), assistant("Hi."), user("Capital of France?")],
    "completion": [assistant("Paris, the capital.")],
}


# ---------------------------------------------------------------------------------------------
# parsing


def test_string_rows_are_a_user_turn_and_the_assistant_answer(tmp_path):
    p = jsonl(tmp_path, [STRING_ROW, {**STRING_ROW, "system": "Be brief."}])
    loaded = load_records(p)
    assert loaded.format == "prompt_completion"
    a, b = loaded.records
    assert isinstance(a, ChatRecord)
    assert a.messages == (Message("user", "What is the capital of France?"), Message("assistant", "Paris."))
    assert a.completion_start == 1 and a.source == f"{p}:1"
    assert [m.role for m in b.messages] == ["system", "user", "assistant"] and b.messages[0].content == "Be brief."
    assert b.completion_start == 2


def test_conversational_rows_keep_the_prompt_turns_and_start_training_at_the_completion(tmp_path):
    two_answers = {"prompt": [user("Count to two.")], "completion": [assistant("One."), assistant("Two.")]}
    loaded = load_records(jsonl(tmp_path, [CONVERSATIONAL_ROW, two_answers]), "prompt_completion")
    a, b = loaded.records
    assert a.as_dicts() == CONVERSATIONAL_ROW["prompt"] + CONVERSATIONAL_ROW["completion"]
    assert a.completion_start == 4
    assert b.as_dicts() == two_answers["prompt"] + two_answers["completion"] and b.completion_start == 1


def test_system_prompt_is_added_only_where_the_prompt_has_none(tmp_path):
    no_system = {"prompt": [user("Hi")], "completion": [assistant("Hello")]}
    a, b, c = load_records(jsonl(tmp_path, [STRING_ROW, no_system, CONVERSATIONAL_ROW]), system_prompt="S").records
    assert a.messages[0] == Message("system", "S") and a.completion_start == 2
    assert b.messages[0] == Message("system", "S") and b.completion_start == 2
    assert c.messages[0] == Message("system", "You are terse.") and c.completion_start == 4


def test_csv_string_rows(tmp_path):
    p = tmp_path / "d.csv"
    p.write_text('prompt,completion\nSay hi,hi\n"two\nlines",\n')
    with pytest.raises(DataError) as e:
        load_records(p)
    assert f"{p}:3 field 'completion': is empty" in str(e.value)
    p.write_text("prompt,completion\nSay hi,hi\n")
    assert load_records(p).records[0].as_dicts() == [user("Say hi"), assistant("hi")]


# ---------------------------------------------------------------------------------------------
# bad rows: file:line, field and reason, like every other format

PROMPT = [user("x")]
ANSWER = [assistant("y")]


@pytest.mark.parametrize(
    "row, fragment",
    [
        ({"prompt": "x"}, "field 'completion': missing"),
        ({"completion": "y"}, "field 'prompt': missing"),
        ({"prompt": "  ", "completion": "y"}, "field 'prompt': is empty"),
        ({"prompt": "x", "completion": ""}, "field 'completion': is empty"),
        ({"prompt": 3, "completion": "y"}, "field 'prompt': must be a string or a list of messages, got int"),
        ({"prompt": "x", "completion": ANSWER}, "field 'completion': must be a string like 'prompt'"),
        ({"prompt": PROMPT, "completion": "y"}, "field 'completion': must be a list of messages like 'prompt'"),
        ({"prompt": [{"role": "wizard", "content": "x"}], "completion": ANSWER}, "field 'prompt[0].role': unknown role 'wizard'"),
        ({"prompt": [{"role": "user"}], "completion": ANSWER}, "field 'prompt[0].content': missing"),
        ({"prompt": [], "completion": ANSWER}, "field 'prompt': is empty"),
        ({"prompt": [user("x"), assistant("y")], "completion": ANSWER}, "field 'prompt': must end with a user message"),
        ({"prompt": PROMPT, "completion": []}, "field 'completion': is empty"),
        ({"prompt": PROMPT, "completion": [user("y")]}, "field 'completion[0].role': must be assistant, got 'user'"),
        ({"prompt": PROMPT, "completion": [assistant("y"), {"role": "system", "content": "z"}]}, "field 'completion[1].role': a system message may only come first"),
        ({"prompt": PROMPT, "completion": [{"role": "assistant", "content": "  "}]}, "field 'completion[0].content': is empty"),
        ({"prompt": PROMPT, "completion": [{"role": "robot", "content": "y"}]}, "field 'completion[0].role': unknown role 'robot'"),
        ({"prompt": PROMPT, "completion": {"role": "assistant", "content": "y"}}, "field 'completion': must be a list of messages like 'prompt'"),
        ({"prompt": "x", "completion": "y", "system": 5}, "field 'system': must be a string, got int"),
        ({"prompt": "x", "completion": "y", "label": True}, "field 'label': marks a KTO row"),
        ([1, 2], ": must be a JSON object, got list"),
    ],
)
def test_bad_prompt_completion_rows(tmp_path, row, fragment):
    p = jsonl(tmp_path, [STRING_ROW, row, STRING_ROW])
    with pytest.raises(DataError) as e:
        load_records(p)  # auto: the first row makes the file prompt_completion
    where = f"{p}:2" + (fragment if fragment.startswith(":") else f" {fragment}")
    assert where in str(e.value)
    assert "1 bad row(s) in prompt_completion data" in str(e.value) and "on_bad_rows=skip" in str(e.value)


def test_skip_policy_writes_the_same_bad_row_record(tmp_path):
    bad = {"prompt": PROMPT, "completion": [user("y")]}
    loaded = load_records(jsonl(tmp_path, [STRING_ROW, bad, CONVERSATIONAL_ROW]), on_bad_rows="skip")
    assert len(loaded.records) == 2
    assert [b.as_json() for b in loaded.bad_rows] == [
        {
            "source": f"{tmp_path / 'd.jsonl'}:2",
            "field": "completion[0].role",
            "reason": "must be assistant, got 'user': the completion is the answer that is trained (earlier turns go in 'prompt')",
            "row": bad,
        }
    ]


# ---------------------------------------------------------------------------------------------
# detection: the label key decides between sft and KTO

KTO_ROWS = [{"prompt": "Say hi", "completion": "hi", "label": True}, {"prompt": "Say hi", "completion": "go away", "label": False}]


def test_kto_rows_are_not_read_as_sft_data(tmp_path):
    p = jsonl(tmp_path, KTO_ROWS)
    with pytest.raises(DataError) as e:
        load_records(p)
    assert "prompt/completion/label, which is KTO (unpaired preference) data" in str(e.value)
    assert "objective.type: kto" in e.value.hint
    # the preference reader still takes them as KTO rows
    loaded = load_preference_records(p)
    assert loaded.format == "kto" and [r.label for r in loaded.records] == [True, False]
    assert all(isinstance(r, UnpairedRecord) for r in loaded.records)


def test_prompt_completion_rows_are_not_read_as_kto_data(tmp_path):
    p = jsonl(tmp_path, [STRING_ROW])
    with pytest.raises(DataError, match="not preference data"):
        load_preference_records(p)
    with pytest.raises(DataError, match="field 'label': missing"):
        load_preference_records(p, "kto")


def test_a_labelled_row_inside_prompt_completion_data_is_a_bad_row(tmp_path):
    """An undesirable KTO completion further down an sft file must not be trained as a good answer."""
    p = jsonl(tmp_path, [STRING_ROW, KTO_ROWS[1]])
    loaded = load_records(p, on_bad_rows="skip")
    assert len(loaded.records) == 1 and [(b.source, b.field) for b in loaded.bad_rows] == [(f"{p}:2", "label")]


def test_recipes_pair_the_format_with_sft_only(tmp_path):
    base = {"data": {"train": str(jsonl(tmp_path, [STRING_ROW])), "format": "prompt_completion"}}
    assert load_recipe(base=base).data.format == "prompt_completion"  # objective sft is the default
    for objective in ("pretrain", "dpo", "kto", "reward"):
        with pytest.raises(ConfigError, match="prompt_completion"):
            load_recipe(base=base, overrides=[f"objective.type={objective}"])


# ---------------------------------------------------------------------------------------------
# rendering: ids and labels against the tokenizer's own template and TRL's split


def reference_labels(tokenizer, prompt: list[dict], completion: list[dict]) -> tuple[list[int], list[int]]:
    """TRL's prompt-completion rule: everything after the prompt rendered with its generation prompt is trained."""
    ids = list(tokenizer.apply_chat_template(prompt + completion, tokenize=True, return_dict=True)["input_ids"])
    prompt_ids = list(tokenizer.apply_chat_template(prompt, tokenize=True, add_generation_prompt=True, return_dict=True)["input_ids"])
    assert ids[: len(prompt_ids)] == prompt_ids
    return ids, [IGNORE_INDEX] * len(prompt_ids) + ids[len(prompt_ids) :]


def messages_of(row: dict) -> tuple[list[dict], list[dict]]:
    if isinstance(row["prompt"], str):
        return [user(row["prompt"])], [assistant(row["completion"])]
    return row["prompt"], row["completion"]


def check_against_references(tokenizer, tmp_path, row: dict) -> None:
    record = load_records(jsonl(tmp_path, [row])).records[0]
    ex = render_chat(tokenizer, record)
    prompt, completion = messages_of(row)
    ids, labels = reference_labels(tokenizer, prompt, completion)
    assert ex.input_ids == ids
    assert ex.labels == labels
    # TRL's own split of the same row: the trained tokens are exactly its completion text
    split = trl.apply_chat_template({"prompt": prompt, "completion": completion}, tokenizer)
    assert tokenizer.decode([t for t in ex.labels if t != IGNORE_INDEX]) == split["completion"]
    assert tokenizer.decode(ex.input_ids) == split["prompt"] + split["completion"]
    eos = tokenizer.convert_tokens_to_ids(tokenizer.eos_token)
    assert eos in [t for t in ex.labels if t != IGNORE_INDEX], "the end-of-turn token must be trained"


@pytest.mark.parametrize("row", [STRING_ROW, CONVERSATIONAL_ROW], ids=["strings", "conversational"])
def test_mask_matches_template_and_trl_tiny(tokenizer, tmp_path, row):
    check_against_references(tokenizer, tmp_path, row)


@pytest.mark.slow
@pytest.mark.parametrize("row", [STRING_ROW, CONVERSATIONAL_ROW], ids=["strings", "conversational"])
def test_mask_matches_template_and_trl_builtin(tmp_path, row):
    from tuneforge.models.load import load_tokenizer

    check_against_references(load_tokenizer("smollm2-135m-instruct"), tmp_path, row)


def test_assistant_turns_in_the_prompt_are_context_not_targets(tokenizer, tmp_path):
    """The same conversation as a messages row trains both answers; as prompt-completion only the completion."""
    as_messages = load_records(jsonl(tmp_path, [{"messages": CONVERSATIONAL_ROW["prompt"] + CONVERSATIONAL_ROW["completion"]}])).records[0]
    as_prompt_completion = load_records(jsonl(tmp_path, [CONVERSATIONAL_ROW], "pc.jsonl")).records[0]
    a, b = render_chat(tokenizer, as_messages), render_chat(tokenizer, as_prompt_completion)
    assert a.input_ids == b.input_ids
    completion_ids = tokenizer("Paris, the capital.", add_special_tokens=False)["input_ids"]
    earlier_ids = tokenizer("Hi.", add_special_tokens=False)["input_ids"]
    assert b.n_trained == len(completion_ids) + 2  # the answer, <|im_end|> and the newline after it
    assert a.n_trained == b.n_trained + len(earlier_ids) + 2


def test_each_completion_message_is_trained(tokenizer, tmp_path):
    row = {"prompt": [user("Count to two.")], "completion": [assistant("One."), assistant("Two.")]}
    ex = render_chat(tokenizer, load_records(jsonl(tmp_path, [row])).records[0])
    assert ex.input_ids == list(tokenizer.apply_chat_template(row["prompt"] + row["completion"], tokenize=True, return_dict=True)["input_ids"])
    runs, run = [], []
    for label in ex.labels + [IGNORE_INDEX]:
        if label == IGNORE_INDEX:
            if run:
                runs.append(run)
            run = []
        else:
            run.append(label)
    eos = tokenizer.convert_tokens_to_ids(tokenizer.eos_token)
    assert [tokenizer.decode(r[: r.index(eos)]) for r in runs] == ["One.", "Two."]


# ---------------------------------------------------------------------------------------------
# a whole run

WORDS = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa", "lambda", "mu"]


def test_sft_run_on_prompt_completion_rows(tmp_path, tiny_model_dir, tokenizer):
    rows = [
        {"prompt": [user("Name a Greek letter."), assistant("Which one?"), user(f"The one called {w}.")], "completion": [assistant(w)]}
        if i % 2
        else {"prompt": f"Repeat the word {w}", "completion": w}
        for i, w in enumerate(WORDS)
    ]
    data = jsonl(tmp_path, rows)
    base = {
        "model": {"name": str(tiny_model_dir)},
        "method": {"type": "lora", "lora": {"r": 4, "alpha": 8, "dropout": 0.0}},
        "data": {"train": str(data), "max_length": 128},
        "training": {"epochs": 2, "batch_size": 3, "learning_rate": 1e-2, "logging_steps": 1, "precision": "fp32", "threads": 1},
        "eval": {"data": str(data), "limit": 2, "max_new_tokens": 4, "num_samples": 1},
        "output": {"dir": str(tmp_path / "run")},
    }
    result = train(load_recipe(base=base))
    run = result.run_dir

    report = json.loads((run / "data_report.json").read_text())["train"]
    expected = [reference_labels(tokenizer, *messages_of(r)) for r in rows]
    assert report["records"] == report["examples"] == len(rows)
    assert report["tokens"] == sum(len(ids) for ids, _ in expected)
    assert report["trained_tokens"] == sum(sum(t != IGNORE_INDEX for t in labels) for _, labels in expected)
    assert result.summary["steps"] == 8  # 12 rows / 3 per batch * 2 epochs
    losses = [r["loss"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "loss" in r]
    assert len(losses) == 8 and losses[-1] < losses[0]
    assert (run / "adapter" / "adapter_model.safetensors").is_file()
    assert set(result.eval_results["models"]) == {"base", "tuned"}
