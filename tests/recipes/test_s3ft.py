"""s3ft: the target mapping with a stub model and judge, the acceptance rules, and SFT's loss on the mapped rows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tuneforge.config import load_recipe
from tuneforge.config.s3ft import S3ftOptions
from tuneforge.data.records import ChatRecord, Message
from tuneforge.errors import DataError
from tuneforge.recipes import RECIPES, train
from tuneforge.recipes.s3ft import choose_targets, exact_accept, llm_accept, marker_accept, numeric_accept, shares, train_s3ft

ROWS = [("What is 2+3?", "5"), ("What is 4+4?", "8"), ("Name a colour.", "Blue"), ("What is 1+1?", "2")]
OWN = {"What is 2+3?": "5", "What is 4+4?": "9", "Name a colour.": "Red", "What is 1+1?": "3"}
RESTATED = {"8": "It is 8", "Blue": "Green", "2": "two"}
ACCEPTED = {("What is 2+3?", "5"), ("What is 4+4?", "It is 8")}  # what the stub judge accepts


def records() -> list[ChatRecord]:
    return [ChatRecord((Message("user", q), Message("assistant", a)), f"t:{i}") for i, (q, a) in enumerate(ROWS)]


def stub_generate(chats: list[list[dict]]) -> list[str]:
    out = []
    for chat in chats:
        text = chat[-1]["content"]
        if "Here is a correct answer" in text:
            out.append(RESTATED[text.split("Here is a correct answer:\n", 1)[1].split("\n", 1)[0]])
        else:
            out.append(OWN[text])
    return out


def stub_accept(questions, answers, golds):
    return [(q, a) in ACCEPTED for q, a in zip(questions, answers)]


def test_the_mapping_is_own_then_paraphrase_then_gold():
    targets = choose_targets(records(), stub_generate, stub_accept, S3ftOptions())
    assert [t.choice for t in targets] == ["own", "paraphrase", "gold", "gold"]
    assert [t.target for t in targets] == ["5", "It is 8", "Blue", "2"]
    assert [t.paraphrase for t in targets] == [None, "It is 8", "Green", "two"]  # the accepted own answer is not restated
    assert shares(targets) == {"own": 0.25, "paraphrase": 0.25, "gold": 0.5}


def test_without_paraphrase_a_rejected_answer_trains_the_gold():
    targets = choose_targets(records(), stub_generate, stub_accept, S3ftOptions(paraphrase=False))
    assert [t.choice for t in targets] == ["own", "gold", "gold", "gold"]


def test_acceptance_rules():
    assert exact_accept(["q"] * 3, ["Paris.", " paris ", "Lyon"], ["Paris", "Paris", "Paris"]) == [True, True, False]
    assert numeric_accept(["q"] * 4, ["so 0.50", "it is 7", "Blue", "1,000"], ["0.5", "8", "blue", "1000"]) == [True, False, True, True]

    class Judge:
        def ask(self, prompts):
            return ["Yes, equivalent.", "no", "maybe"]

    assert llm_accept(Judge())(["q"] * 3, ["a"] * 3, ["g"] * 3) == [True, False, False]


def recipe_for(tmp_path: Path, model_dir: Path, objective: str, rows) -> object:
    path = tmp_path / f"{objective}.jsonl"
    path.write_text("".join(json.dumps({"instruction": q, "output": a}) + "\n" for q, a in rows))
    return load_recipe(base={
        "model": {"name": str(model_dir)},
        "method": {"type": "lora", "lora": {"r": 4, "alpha": 8, "dropout": 0.0}},
        "data": {"train": str(path), "format": "alpaca", "val_fraction": 0.0},
        "objective": {"type": objective},
        "training": {"max_steps": 3, "batch_size": 2, "learning_rate": 1e-2, "logging_steps": 1, "precision": "fp32"},
        "output": {"dir": str(tmp_path / f"run-{objective}")},
    })  # fmt: skip


def _losses(run: Path) -> list[float]:
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows if "loss" in r]


def test_s3ft_trains_exactly_as_sft_on_the_mapped_targets(tmp_path, tiny_model_dir):
    result = train_s3ft(recipe_for(tmp_path, tiny_model_dir, "s3ft", ROWS), generate=stub_generate, accept=stub_accept)
    run = result.run_dir
    chosen = [json.loads(x) for x in (run / "s3ft" / "targets.jsonl").read_text().splitlines()]
    assert [c["choice"] for c in chosen] == ["own", "paraphrase", "gold", "gold"]
    assert result.summary["s3ft_shares"] == {"own": 0.25, "paraphrase": 0.25, "gold": 0.5}
    assert json.loads((run / "summary.json").read_text())["s3ft_shares"]["gold"] == 0.5

    mapped = [(q, c["target"]) for (q, _), c in zip(ROWS, chosen)]
    sft = train(recipe_for(tmp_path, tiny_model_dir, "sft", mapped))
    assert len(_losses(run)) == 3 and _losses(run) == _losses(sft.run_dir)
    assert RECIPES["s3ft"] is train_s3ft


def test_without_stubs_the_base_model_answers_and_the_exact_rule_judges(tmp_path, tiny_model_dir):
    recipe = recipe_for(tmp_path, tiny_model_dir, "s3ft", ROWS).model_copy(deep=True)
    recipe.objective.s3ft.accept = "exact"
    recipe.objective.s3ft.max_new_tokens = 4
    recipe.training.max_steps = 1
    run = train_s3ft(recipe).run_dir
    chosen = [json.loads(x) for x in (run / "s3ft" / "targets.jsonl").read_text().splitlines()]
    assert len(chosen) == 4 and all(c["choice"] == "gold" and c["target"] == g for c, (_, g) in zip(chosen, ROWS))  # a random model is never right
    assert all(isinstance(c["own"], str) and isinstance(c["paraphrase"], str) for c in chosen)


def test_s3ft_takes_the_sft_runs_training_options(tmp_path, tiny_model_dir):
    """The sft run's options (here NEFTune) apply to s3ft and give sft's losses on the mapped targets."""

    def with_neftune(recipe):
        recipe = recipe.model_copy(deep=True)
        recipe.training.neftune_alpha = 5.0
        return load_recipe(base=recipe.model_dump(mode="json", exclude_none=True))  # validated: s3ft may use it

    result = train_s3ft(with_neftune(recipe_for(tmp_path, tiny_model_dir, "s3ft", ROWS)), generate=stub_generate, accept=stub_accept)
    chosen = [json.loads(x) for x in (result.run_dir / "s3ft" / "targets.jsonl").read_text().splitlines()]
    sft = train(with_neftune(recipe_for(tmp_path, tiny_model_dir, "sft", [(q, c["target"]) for (q, _), c in zip(ROWS, chosen)])))
    assert _losses(result.run_dir) == _losses(sft.run_dir)
    (tmp_path / "plain").mkdir()
    plain = train(recipe_for(tmp_path / "plain", tiny_model_dir, "sft", [(q, c["target"]) for (q, _), c in zip(ROWS, chosen)]))
    assert _losses(plain.run_dir) != _losses(sft.run_dir)  # the noise did reach the embeddings


def test_marker_acceptance_needs_the_number_after_the_marker():
    accept = marker_accept("####")
    gold = "3 + 4 = 7\n#### 7"
    answers = ["so 7.\n#### 7.0", "the answer is 7", "#### 8 (not 7)", "x\n####7"]
    assert accept(["q"] * 4, answers, [gold] * 4) == [True, False, False, True]
    with pytest.raises(DataError, match="no number after '####'"):
        accept(["q"], ["#### 7"], ["seven"])
