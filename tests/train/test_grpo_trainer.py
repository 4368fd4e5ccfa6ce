"""The grpo/rloo trainer on a tiny random model: first-update ratio and KL, logged keys, dynamic sampling, rollouts."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import TrainerCallback

from tests.helpers.tiny import tiny_llama, tiny_tokenizer
from tuneforge.config.grpo import GrpoOptions
from tuneforge.data.records import Message, PromptRecord
from tuneforge.objectives.reward_scores import RewardScores
from tuneforge.train.arguments import TuneforgeTrainingArguments
from tuneforge.train.grpo_trainer import make_grpo_trainer, rollout_order
from tuneforge.train.rollout import Sampling, completion_logps, completion_mask_of, generate_rollout

PROMPTS = [PromptRecord((Message("user", f"Say a word about {w}"),), f"train.jsonl:{i + 1}", {"answer": w}) for i, w in enumerate(["fox", "dog", "cat", "owl"])]


class LengthScorer:
    """Deterministic reward: longer completions score higher (so groups have variance), plus a constant column."""

    names = ["length", "constant"]

    def __call__(self, prompts: Sequence[PromptRecord], completions: Sequence[str]) -> RewardScores:
        length = [min(len(c), 40) / 40 for c in completions]
        return RewardScores(total=length, per_reward={"length": list(length), "constant": [1.0] * len(completions)})


class ConstantScorer:
    names = ["constant"]

    def __call__(self, prompts, completions) -> RewardScores:
        return RewardScores(total=[1.0] * len(completions), per_reward={"constant": [1.0] * len(completions)})


class Logs(TrainerCallback):
    def __init__(self) -> None:
        self.rows: list[dict] = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            self.rows.append(dict(logs))


def lora_model():
    tok = tiny_tokenizer()
    torch.manual_seed(0)
    model = get_peft_model(tiny_llama(len(tok)), LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["q_proj", "v_proj"]))
    return model, tok


def run_trainer(tmp_path, options: GrpoOptions, scorer, *, steps: int, objective: str = "grpo", batch_size: int = 2, grad_accum: int = 1):
    model, tok = lora_model()
    args = TuneforgeTrainingArguments(
        output_dir=str(tmp_path / "ckpt"), max_steps=steps, per_device_train_batch_size=batch_size, gradient_accumulation_steps=grad_accum,
        learning_rate=5e-2, logging_steps=1, save_strategy="no", report_to=[], use_cpu=True, disable_tqdm=True,
        remove_unused_columns=False, seed=0, lr_scheduler_type="constant",
    )  # fmt: skip
    logs = Logs()
    trainer = make_grpo_trainer(options, objective, model, args, tok, PROMPTS, scorer, [logs], epochs=1, max_steps=steps)
    trainer.train()
    return trainer, logs.rows


def test_first_update_of_a_rollout_has_ratio_one_and_kl_zero(tmp_path):
    opts = GrpoOptions(num_generations=4, max_completion_length=12, num_iterations=2, beta=0.1)
    _, rows = run_trainer(tmp_path, opts, LengthScorer(), steps=2)
    first, second = rows
    assert first["importance_ratio"] == pytest.approx(1.0, abs=1e-5)
    assert first["kl"] == pytest.approx(0.0, abs=1e-6)  # LoRA starts as the identity: policy == reference
    assert first["clip_ratio"] == 0.0
    # the second update reuses the rollout after one optimizer step: the ratio and KL move away
    assert abs(second["importance_ratio"] - 1.0) > 1e-4
    assert second["kl"] > 0
    assert "rollout_s" in first and "rollout_s" not in second  # no new generation on the second iteration


def test_logged_keys_and_per_reward_stats(tmp_path):
    opts = GrpoOptions(num_generations=4, max_completion_length=10)
    trainer, rows = run_trainer(tmp_path, opts, LengthScorer(), steps=2)
    for key in ("loss", "rollout_s", "update_s", "gen_tokens_per_s", "reward/mean", "reward/std", "reward/length/mean",
                "reward/length/std", "reward/constant/mean", "zero_variance_share", "clip_ratio", "completion_length", "truncated_share"):
        assert key in rows[0], key
    assert rows[0]["reward/constant/mean"] == 1.0 and rows[0]["reward/constant/std"] == 0.0
    assert 0 < rows[0]["completion_length"] <= 10
    assert trainer.state.num_input_tokens_seen > 0


def test_all_equal_rewards_are_dropped_under_dynamic_sampling(tmp_path):
    opts = GrpoOptions(num_generations=3, max_completion_length=6, dynamic_sampling=True)
    model_before = lora_model()[0].state_dict()
    trainer, rows = run_trainer(tmp_path, opts, ConstantScorer(), steps=1)
    assert rows[0]["zero_variance_share"] == 1.0
    assert rows[0]["dropped_groups"] == 2.0  # both prompts of the step
    assert rows[0]["loss"] == 0.0
    after = trainer.model.state_dict()
    assert all(torch.equal(after[k], v) for k, v in model_before.items())  # nothing learned, nothing changed


def test_rloo_runs_and_learns(tmp_path):
    opts = GrpoOptions(num_generations=4, max_completion_length=8, loss_type="grpo")
    model_before = {k: v.clone() for k, v in lora_model()[0].state_dict().items() if "lora_B" in k}
    trainer, rows = run_trainer(tmp_path, opts, LengthScorer(), steps=1, objective="rloo")
    after = trainer.model.state_dict()
    assert any(not torch.equal(after[k], v) for k, v in model_before.items())


def test_rollout_masks_and_logps_match_generation():
    model, tok = lora_model()
    torch.manual_seed(1)
    roll = generate_rollout(model, tok, PROMPTS[:2], Sampling(num_generations=2, max_completion_length=8, temperature=1.0))
    assert roll.completion_ids.shape[0] == 4 and roll.records[0] is roll.records[1]
    mask, truncated = completion_mask_of(torch.tensor([[5, 2, 7], [5, 6, 7]]), [2])
    assert mask.tolist() == [[1, 1, 0], [1, 1, 1]] and truncated.tolist() == [False, True]
    # log-probs of the completions equal a plain unpadded forward of each row
    logps = completion_logps(model, roll.input_ids, roll.attention_mask, roll.completion_ids.shape[1])
    for i in range(4):
        p = roll.prompt_ids[i][roll.prompt_mask[i].bool()]
        n = int(roll.completion_mask[i].sum())
        ids = torch.cat([p, roll.completion_ids[i, :n]]).unsqueeze(0)
        with torch.no_grad():
            ref = torch.log_softmax(model(input_ids=ids).logits[0, len(p) - 1 : -1].float(), -1)
        expected = ref.gather(1, ids[0, len(p) :].unsqueeze(1)).squeeze(1)
        assert torch.allclose(logps[i, :n].detach(), expected, atol=1e-4)


def test_rollout_order_repeats_each_step_for_its_iterations():
    order = rollout_order(5, 2, 3, epochs=1, max_steps=None, seed=0)
    steps = [order[i : i + 2] for i in range(0, len(order), 2)]
    assert len(steps) == 9  # ceil(5 / 2) = 3 steps per epoch, each served 3 times
    assert steps[0] == steps[1] == steps[2] and steps[3] == steps[4]
    assert set(order) == set(range(5))


def test_shared_prefill_samples_exactly_what_separate_prefills_sample():
    model, tok = lora_model()
    for name, p in model.named_parameters():  # a non-identity adapter, so the check covers it
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.05)
    sampling = Sampling(num_generations=3, max_completion_length=10)
    torch.manual_seed(5)
    separate = generate_rollout(model, tok, PROMPTS[:3], sampling, share_prefill=False)
    torch.manual_seed(5)
    shared = generate_rollout(model, tok, PROMPTS[:3], sampling, share_prefill=True)
    assert torch.equal(separate.prompt_ids, shared.prompt_ids)
    assert torch.equal(separate.completion_ids, shared.completion_ids)
    assert separate.completions == shared.completions
