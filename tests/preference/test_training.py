"""Preference examples, log-probs, the trainer (closed forms at init, one step in the right direction) and whole runs."""

import io
import json
import math
from pathlib import Path

import pytest
import torch
from transformers import TrainingArguments
from typer.testing import CliRunner

from tests.helpers.tiny import tiny_llama, tiny_tokenizer
from tuneforge.config import load_recipe
from tuneforge.config.schema import MethodSection, ObjectiveSection
from tuneforge.data.preference import PreferenceRecord, UnpairedRecord
from tuneforge.data.records import Message
from tuneforge.data.render import IGNORE_INDEX
from tuneforge.methods import apply_method
from tuneforge.data.preference_examples import (
    build_pair_examples,
    build_unpaired_examples,
    render_answer,
)
from tuneforge.objectives.preference import sequence_logps
from tuneforge.objectives.reward import (
    apply_reward_method,
    load_reward_model,
    reward_scores,
)
from tuneforge.data.preference_collate import pad_sides
from tuneforge.train.preference_trainer import make_preference_trainer
from tuneforge.recipes import train

LN2 = math.log(2)
PAIRS = [
    PreferenceRecord(
        (Message("user", f"Say hello {i}"),),
        f"Hello there, friend {i}.",
        f"Go away {i}",
        f"mem:{i + 1}",
    )
    for i in range(6)
]


def lora(r=4):
    return MethodSection(type="lora", lora={"r": r, "alpha": 2 * r, "dropout": 0.0})


def args(tmp_path, **kw):
    base = {
        "output_dir": str(tmp_path / "ckpt"),
        "per_device_train_batch_size": 3,
        "per_device_eval_batch_size": 3,
        "learning_rate": 5e-2,
        "max_steps": 1,
        "lr_scheduler_type": "constant",
        "report_to": [],
        "use_cpu": True,
        "remove_unused_columns": False,
        "save_strategy": "no",
        "logging_steps": 1,
        "disable_tqdm": True,
        "seed": 0,
    }
    base.update(kw)
    return TrainingArguments(**base)


def first_batch(trainer):
    return next(iter(trainer.get_train_dataloader()))


# ---- examples and log-probs ----------------------------------------------------------------------------
def test_render_answer_equals_chat_template_and_labels_only_the_final_answer(tokenizer):
    prompt = (
        Message("system", "Be brief."),
        Message("user", "Hi"),
        Message("assistant", "Hello"),
        Message("user", "Again?"),
    )
    side = render_answer(tokenizer, prompt, "Yes, again.", "mem:1")
    msgs = [{"role": m.role, "content": m.content} for m in prompt] + [
        {"role": "assistant", "content": "Yes, again."}
    ]
    expected = tokenizer.apply_chat_template(msgs, tokenize=True, return_dict=False)
    assert side.input_ids == list(expected)
    trained = [t for t in side.labels if t != IGNORE_INDEX]
    assert (
        tokenizer.decode(trained) == "Yes, again.<|im_end|>\n"
    )  # the earlier assistant turn is context only
    assert side.prompt_length == len(
        tokenizer.apply_chat_template(
            msgs[:-1], tokenize=True, add_generation_prompt=True, return_dict=False
        )
    )


def test_overlong_pairs_are_truncated_or_dropped_and_counted(tokenizer):
    long = PreferenceRecord(
        (Message("user", "word " * 80),), "short answer", "other answer", "mem:9"
    )
    ex, report = build_pair_examples([PAIRS[0], long], tokenizer, 48, "drop")
    assert (
        len(ex) == 1
        and len(report.dropped) == 1
        and "data.overlong=drop" in report.dropped[0].reason
    )
    ex, report = build_pair_examples([PAIRS[0], long], tokenizer, 48, "truncate")
    assert (
        len(ex) == 1
        and report.truncated == 1
        and "prompt alone fills" in report.dropped[0].reason
    )


@pytest.mark.parametrize("tie", [True, False])
def test_sequence_logps_equal_full_logits_reference(tokenizer, tie):
    model = tiny_llama(len(tokenizer), tie=tie)
    ex, _ = build_pair_examples(PAIRS[:3], tokenizer, 128, "truncate")
    b = pad_sides(
        [e.chosen for e in ex] + [e.rejected for e in ex], tokenizer.pad_token_id
    )
    sums, counts = sequence_logps(
        model, b["input_ids"], b["attention_mask"], b["labels"]
    )
    logits = model(
        input_ids=b["input_ids"], attention_mask=b["attention_mask"]
    ).logits.float()
    lp = logits[:, :-1].log_softmax(-1)
    for i in range(len(sums)):
        tgt = b["labels"][i, 1:]
        keep = tgt != IGNORE_INDEX
        expected = lp[i][keep].gather(1, tgt[keep].unsqueeze(1)).sum()
        assert counts[i] == keep.sum()
        assert torch.allclose(sums[i], expected, atol=1e-4)


# ---- the trainer: closed forms at init ------------------------------------------------------------------
def _trainer(
    tmp_path, tokenizer, objective, method=None, records=PAIRS, model=None, **kw
):
    obj = ObjectiveSection(type=objective, **kw)
    if objective == "reward":
        model = model or load_reward_model(
            str(_saved_tiny(tmp_path)), pad_token_id=tokenizer.pad_token_id
        )
        model = apply_reward_method(model, method or lora())
    else:
        model = apply_method(model or tiny_llama(len(tokenizer)), method or lora())
    build = build_unpaired_examples if objective == "kto" else build_pair_examples
    ex, _ = build(records, tokenizer, 128, "truncate")
    return make_preference_trainer(
        obj,
        model,
        args(tmp_path),
        tokenizer,
        ex,
        ex[:3],
        run_dir=tmp_path,
        max_length=128,
    )


def _saved_tiny(tmp_path) -> Path:
    path = tmp_path / "tiny"
    if not path.exists():
        tok = tiny_tokenizer()
        tiny_llama(len(tok)).save_pretrained(path)
        tok.save_pretrained(path)
    return path


@pytest.mark.parametrize("loss", ["sigmoid", "robust", "conservative"])
def test_dpo_loss_at_init_is_ln2_through_the_trainer(tmp_path, tokenizer, loss):
    trainer = _trainer(
        tmp_path, tokenizer, "dpo", preference={"loss": loss, "label_smoothing": 0.1}
    )
    assert (
        trainer.ref_model is None
    )  # LoRA: the reference is the adapter-disabled model, no copy
    assert trainer.compute_loss(
        trainer.model, first_batch(trainer)
    ).item() == pytest.approx(LN2, abs=1e-6)


def test_ipo_at_init_through_the_trainer(tmp_path, tokenizer):
    trainer = _trainer(
        tmp_path, tokenizer, "dpo", preference={"loss": "ipo", "beta": 0.5}
    )
    assert trainer.compute_loss(
        trainer.model, first_batch(trainer)
    ).item() == pytest.approx(1 / (4 * 0.5**2), abs=1e-5)


def test_kto_at_init_is_one_half_through_the_trainer(tmp_path, tokenizer):
    trainer = _trainer(tmp_path, tokenizer, "kto")
    batch = first_batch(trainer)
    assert "kl_input_ids" in batch and batch["desirable"].any()
    assert trainer.compute_loss(trainer.model, batch).item() == pytest.approx(
        0.5, abs=1e-6
    )


def test_reward_loss_at_init_is_ln2_with_a_zero_head(tmp_path, tokenizer):
    trainer = _trainer(tmp_path, tokenizer, "reward")
    assert trainer.compute_loss(
        trainer.model, first_batch(trainer)
    ).item() == pytest.approx(LN2, abs=1e-6)


def test_full_fine_tuning_uses_a_frozen_copy_and_precompute_matches(
    tmp_path, tokenizer
):
    model = tiny_llama(len(tokenizer))
    full = _trainer(
        tmp_path, tokenizer, "dpo", method=MethodSection(type="full"), model=model
    )
    assert full.ref_model is not None and not any(
        p.requires_grad for p in full.ref_model.parameters()
    )
    pre = _trainer(
        tmp_path,
        tokenizer,
        "dpo",
        method=MethodSection(type="full"),
        model=tiny_llama(len(tokenizer)),
        preference={"precompute_reference": True},
    )
    assert pre.ref_model is None and (tmp_path / "reference_logps.jsonl").is_file()
    batch = first_batch(pre)
    assert "ref_logps" in batch
    # one step each from the same start: identical losses, whether the reference is a copy or precomputed
    full.train()
    pre.train()
    assert full.state.log_history[0]["loss"] == pytest.approx(
        pre.state.log_history[0]["loss"], abs=1e-6
    )
    # an earlier run's reference file is read back, matched by source
    again = _trainer(
        tmp_path,
        tokenizer,
        "dpo",
        method=MethodSection(type="full"),
        preference={"reference_logps": str(tmp_path / "reference_logps.jsonl")},
    )
    assert torch.allclose(first_batch(again)["ref_logps"], batch["ref_logps"])


# ---- one step moves the chosen log-ratio up relative to the rejected ------------------------------------
@pytest.mark.parametrize(
    ("objective", "method"),
    [
        ("dpo", "lora"),
        ("dpo", "full"),
        ("simpo", "lora"),
        ("orpo", "lora"),
        ("kto", "lora"),
    ],
)
def test_one_step_moves_chosen_up_relative_to_rejected(
    tmp_path, tokenizer, objective, method
):
    torch.manual_seed(0)
    m = lora(8) if method == "lora" else MethodSection(type="full")
    kw = {"preference": {"beta": 2.0, "gamma": 0.0}} if objective == "simpo" else {}
    trainer = _trainer(
        tmp_path, tokenizer, objective, method=m, records=PAIRS[:3], **kw
    )
    ex, _ = build_pair_examples(PAIRS[:3], tokenizer, 128, "truncate")
    b = pad_sides(
        [e.chosen for e in ex] + [e.rejected for e in ex], tokenizer.pad_token_id
    )

    def margin():
        with torch.no_grad():
            lp, n = sequence_logps(
                trainer.model, b["input_ids"], b["attention_mask"], b["labels"]
            )
        avg = lp / n if objective in ("simpo", "orpo") else lp
        return (avg[:3] - avg[3:]).mean().item()

    before = margin()
    trainer.args.learning_rate = 1e-2 if method == "full" else 5e-2
    trainer.train()
    assert margin() > before + 1e-3


# ---- whole runs through the one train() pipeline ---------------------------------------------------------
def _write(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _recipe(tmp_path, model_dir, objective, *overrides):
    rows = [
        {
            "prompt": f"Say hello {i}",
            "chosen": f"Hello there, friend {i}.",
            "rejected": f"Go away {i}",
        }
        for i in range(8)
    ]
    base = {
        "model": {"name": str(model_dir)},
        "method": {"type": "lora", "lora": {"r": 4, "alpha": 8, "dropout": 0.0}},
        "data": {
            "train": str(_write(tmp_path / "train.jsonl", rows)),
            "val_fraction": 0.25,
            "max_length": 64,
        },
        "objective": {"type": objective},
        "training": {
            "epochs": 1,
            "batch_size": 3,
            "learning_rate": 1e-2,
            "logging_steps": 1,
            "precision": "fp32",
        },
        "output": {"dir": str(tmp_path / f"run-{objective}")},
    }
    return load_recipe(base=base, overrides=list(overrides))


def test_dpo_run_logs_preference_metrics(tmp_path, tiny_model_dir):
    chat = _write(
        tmp_path / "eval.jsonl",
        [{"instruction": "Say hello 1", "output": "Hello there, friend 1."}],
    )
    result = train(
        _recipe(
            tmp_path,
            tiny_model_dir,
            "dpo",
            f"eval.data={chat}",
            "eval.max_new_tokens=4",
        )
    )
    rows = [
        json.loads(line)
        for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()
    ]
    train_rows = [r for r in rows if "loss" in r]
    assert train_rows[0]["loss"] == pytest.approx(LN2, abs=1e-5)
    for key in (
        "rewards/chosen",
        "rewards/rejected",
        "rewards/margins",
        "rewards/accuracies",
        "logps/chosen",
        "logps/rejected",
    ):
        assert key in train_rows[0]
    assert any("eval_rewards/accuracies" in r for r in rows)
    assert (result.run_dir / "adapter" / "adapter_model.safetensors").is_file()
    assert (
        result.run_dir / "eval" / "tuned.json"
    ).is_file()  # generation eval runs on chat data


def test_reward_run_saves_a_model_that_score_loads(tmp_path, tiny_model_dir):
    from tuneforge.cli.main import app
    from tuneforge.targets import load_run
    from tuneforge.serve.score import score_file

    result = train(_recipe(tmp_path, tiny_model_dir, "reward", "training.epochs=3"))
    rows = [
        json.loads(line)
        for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()
    ]
    assert (
        rows[0]["loss"] == pytest.approx(LN2, abs=1e-6)
        and "rewards/accuracies" in rows[0]
    )
    loaded = load_run(result.run_dir)
    assert (
        type(loaded.model.get_base_model()).__name__ == "LlamaForSequenceClassification"
    )
    pairs = '{"prompt": "Say hello 3", "response": "Hello there, friend 3."}\n{"prompt": "Say hello 3", "response": "Go away 3"}\n'
    out = io.StringIO()
    assert score_file(str(result.run_dir), io.StringIO(pairs), out) == 2
    scores = [json.loads(line)["score"] for line in out.getvalue().splitlines()]
    assert (
        scores[0] > scores[1]
    )  # the trained head prefers the chosen style on a training prompt
    # same scores as the model's own pooled forward over the rendered pair
    tok = loaded.tokenizer
    side = render_answer(tok, (Message("user", "Say hello 3"),), "Go away 3", "x")
    b = pad_sides([side], tok.pad_token_id)
    assert reward_scores(
        loaded.model, b["input_ids"], b["attention_mask"]
    ).item() == pytest.approx(scores[1], abs=1e-5)
    # the CLI: stdin in, JSONL out; a non-reward run is refused with a hint
    cli = CliRunner().invoke(app, ["score", str(result.run_dir)], input=pairs)
    assert cli.exit_code == 0, cli.output
    assert [
        json.loads(line)["score"] for line in cli.stdout.strip().splitlines()
    ] == pytest.approx(scores, abs=1e-5)
    bad = CliRunner().invoke(
        app, ["score", str(result.run_dir)], input='{"prompt": "x", "response": 3}\n'
    )
    assert bad.exit_code == 2 and "<stdin>:1 field 'response'" in bad.output
    # a reward model cannot generate: chat refuses it and points at `score`
    chat = CliRunner().invoke(app, ["chat", str(result.run_dir), "--prompt", "hi"])
    assert chat.exit_code == 2 and "reward model" in chat.output and "tuneforge score" in chat.output


def test_kto_run_on_unpaired_file(tmp_path, tiny_model_dir):
    rows = [
        {"prompt": f"q{i}", "completion": f"answer {i}", "label": i % 2 == 0}
        for i in range(8)
    ]
    recipe = _recipe(
        tmp_path,
        tiny_model_dir,
        "kto",
        f"data.train={_write(tmp_path / 'kto.jsonl', rows)}",
        "data.format=kto",
    )
    result = train(recipe)
    rows = [
        json.loads(line)
        for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()
    ]
    assert rows[0]["loss"] == pytest.approx(0.5, abs=1e-6) and "kl" in rows[0]


def test_kto_needs_both_labels(tokenizer):
    from tuneforge.errors import DataError

    recs = [
        UnpairedRecord((Message("user", "q"),), f"a{i}", True, f"m:{i}")
        for i in range(3)
    ]
    with pytest.raises(DataError, match="every KTO example is desirable"):
        build_unpaired_examples(recs, tokenizer, 64, "truncate")


def test_dpo_with_prompt_tuning_scores_the_real_positions(tmp_path, tokenizer):
    """Prompt-learning adapters prepend virtual tokens; log-probs must come from the real positions."""
    trainer = _trainer(
        tmp_path,
        tokenizer,
        "dpo",
        method=MethodSection(type="prompt_tuning"),
        records=PAIRS[:3],
    )
    ex, _ = build_pair_examples(PAIRS[:3], tokenizer, 128, "truncate")
    b = pad_sides(
        [e.chosen for e in ex] + [e.rejected for e in ex], tokenizer.pad_token_id
    )
    with torch.no_grad():
        ours, _ = sequence_logps(
            trainer.model, b["input_ids"], b["attention_mask"], b["labels"]
        )
        with trainer.model.disable_adapter():
            plain, _ = sequence_logps(
                trainer.model, b["input_ids"], b["attention_mask"], b["labels"]
            )
        base, _ = sequence_logps(
            trainer.model.get_base_model(),
            b["input_ids"],
            b["attention_mask"],
            b["labels"],
        )
    assert torch.allclose(
        plain, base, atol=1e-5
    )  # adapter disabled = the base model (the reference)
    assert not torch.allclose(
        ours, base, atol=1e-3
    )  # the virtual tokens change the scores
    before = (ours[:3] - ours[3:]).mean().item()
    trainer.train()
    with torch.no_grad():
        after, _ = sequence_logps(
            trainer.model, b["input_ids"], b["attention_mask"], b["labels"]
        )
    assert (after[:3] - after[3:]).mean().item() > before


def test_kto_precomputed_reference_matches_on_the_fly(tmp_path, tokenizer):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    live = _trainer(tmp_path / "a", tokenizer, "kto", method=MethodSection(type="full"))
    pre = _trainer(
        tmp_path / "b",
        tokenizer,
        "kto",
        method=MethodSection(type="full"),
        preference={"precompute_reference": True},
    )
    batch = first_batch(pre)
    assert "ref_logps" in batch and "ref_kl_logps" in batch
    assert pre.compute_loss(pre.model, batch).item() == pytest.approx(0.5, abs=1e-6)
    live.train()
    pre.train()
    assert live.state.log_history[0]["loss"] == pytest.approx(
        pre.state.log_history[0]["loss"], abs=1e-6
    )
    assert live.state.log_history[0]["kl"] == pytest.approx(
        pre.state.log_history[0]["kl"], abs=1e-6
    )


@pytest.mark.parametrize("objective", ["dpo", "kto", "reward"])
def test_bf16_preference_runs_take_the_speed_plan_and_start_at_ln2_or_half(tmp_path, tiny_model_dir, objective):
    """Eager attention and bf16 frozen weights (train/speed_plan.py) under the preference trainer's
    autocast: the reference pass and the scalar head run with them, and the loss at init is unchanged."""
    recipe = _recipe(tmp_path, tiny_model_dir, objective, "training.precision=bf16", "data.val_fraction=0")
    if objective == "kto":
        rows = [{"prompt": f"Say hello {i}", "completion": f"Hello {i}", "label": i % 2 == 0} for i in range(8)]
        _write(tmp_path / "train.jsonl", rows)
    result = train(recipe)
    plan = result.summary["speed_plan"]
    assert "attention eager" in plan and "frozen weights bfloat16" in plan and "not compiled for objective" in plan
    rows = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    first = next(r for r in rows if "loss" in r)
    expected = {"dpo": LN2, "kto": 0.5, "reward": None}[objective]
    if expected is not None:  # policy == reference at init, both through the same bf16 weights
        assert first["loss"] == pytest.approx(expected, abs=1e-5)
    assert all(r["loss"] == r["loss"] for r in rows if "loss" in r)  # no NaN
