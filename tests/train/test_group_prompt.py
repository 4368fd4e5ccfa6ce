"""Each prompt run once for its G completions (train/group_prompt.py): the same log-probs, values and
gradients as the plain forward over every prompt + completion row, the cases that fall back to it,
and the speed plan that turns it on for grpo, rloo and ppo."""

from __future__ import annotations

import pytest
import torch

from tests.helpers.tiny import tiny_lora
from tuneforge.config.schema import MethodSection, TrainingSection
from tuneforge.models.precision import Precision
from tuneforge.objectives.shared_prefix import MIN_SHARED_TOKENS
from tuneforge.train.group_prompt import group_completion_logps, group_completion_states
from tuneforge.train.rollout import completion_logps
from tuneforge.train.speed_plan import choose_share_prefix
from tuneforge.train.value_head import ValueHead, logps_and_values

VOCAB = 320
G = 3
CPU = Precision("fp32", "cpu", "test")


def lora_model(attention: str = "eager"):
    return tiny_lora(VOCAB, attention)


def rollout_rows(prompt_lengths=(22, 18), completion_lengths=((9, 4, 7), (6, 9, 1))):
    """Left-padded prompts, each repeated G times, and right-padded completions of different lengths."""
    torch.manual_seed(1)
    width, cwidth = max(prompt_lengths), max(max(c) for c in completion_lengths)
    prompt_ids = torch.zeros(len(prompt_lengths) * G, width, dtype=torch.long)
    prompt_mask = torch.zeros_like(prompt_ids)
    completion_ids = torch.zeros(len(prompt_lengths) * G, cwidth, dtype=torch.long)
    completion_mask = torch.zeros(completion_ids.shape)
    for p, (n, lengths) in enumerate(zip(prompt_lengths, completion_lengths, strict=True)):
        prompt = torch.randint(3, VOCAB, (n,))
        for g, c in enumerate(lengths):
            row = p * G + g
            prompt_ids[row, width - n :] = prompt
            prompt_mask[row, width - n :] = 1
            completion_ids[row, :c] = torch.randint(3, VOCAB, (c,))
            completion_mask[row, :c] = 1
    return prompt_ids, prompt_mask, completion_ids, completion_mask


def plain_logps(model, rows):
    prompt_ids, prompt_mask, completion_ids, completion_mask = rows
    ids = torch.cat([prompt_ids, completion_ids], dim=1)
    mask = torch.cat([prompt_mask, completion_mask.long()], dim=1)
    return completion_logps(model, ids, mask, completion_ids.shape[1])


@pytest.mark.parametrize("attention", ["eager", "sdpa"])
def test_log_probs_and_gradients_equal_the_plain_forward(attention):
    model = lora_model(attention)
    rows = rollout_rows()
    mask = rows[3].bool()
    results = []
    for shared in (False, True):
        model.zero_grad()
        logps = group_completion_logps(model, *rows, group=G)[0] if shared else plain_logps(model, rows)
        (logps * rows[3]).sum().backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
        results.append((logps.detach(), grads))
    (plain, plain_grads), (grouped, grouped_grads) = results
    assert torch.allclose(plain[mask], grouped[mask], atol=1e-5)  # padded completion positions are masked out
    assert plain_grads and plain_grads.keys() == grouped_grads.keys()
    for name, grad in plain_grads.items():
        assert torch.allclose(grad, grouped_grads[name], atol=1e-6, rtol=1e-4), name


def test_temperature_divides_the_logits_as_in_the_plain_path():
    model = lora_model()
    rows = rollout_rows()
    ids = torch.cat([rows[0], rows[2]], dim=1)
    full_mask = torch.cat([rows[1], rows[3].long()], dim=1)
    with torch.no_grad():
        plain = completion_logps(model, ids, full_mask, rows[2].shape[1], temperature=0.7)
        grouped = group_completion_logps(model, *rows, group=G, temperature=0.7)[0]
    assert torch.allclose(plain[rows[3].bool()], grouped[rows[3].bool()], atol=1e-5)


def test_values_read_the_same_states_as_ppos_plain_pass():
    model = lora_model()
    head = ValueHead(64)
    torch.nn.init.normal_(head.linear.weight, std=0.1)  # a trained head, so the states are compared through it
    rows = rollout_rows()
    ids = torch.cat([rows[0], rows[2]], dim=1)
    full_mask = torch.cat([rows[1], rows[3].long()], dim=1)
    with torch.no_grad():
        plain_lp, plain_v = logps_and_values(model, head, ids, full_mask, rows[2].shape[1])
        grouped_lp, states = group_completion_logps(model, *rows, group=G)
        grouped_v = head(states)
    real = rows[3].bool()
    assert torch.allclose(plain_lp[real], grouped_lp[real], atol=1e-5)
    assert torch.allclose(plain_v[real], grouped_v[real], atol=1e-5)


def test_the_reference_with_the_adapter_disabled_is_the_base_model():
    model = lora_model()
    rows = rollout_rows()
    real = rows[3].bool()
    with torch.no_grad():
        adapted = plain_logps(model, rows)
        with model.disable_adapter():
            base = plain_logps(model, rows)
            grouped = group_completion_logps(model, *rows, group=G)[0]
    assert not torch.allclose(adapted[real], base[real], atol=1e-3)  # the adapter changes the log-probs ...
    assert torch.allclose(base[real], grouped[real], atol=1e-5)  # ... and is off in the grouped pass too


def test_what_falls_back_to_the_plain_forward():
    model = lora_model()
    base = model.get_base_model()
    rows = rollout_rows()
    assert group_completion_states(base, *rows, group=1) is None  # one completion per prompt
    assert group_completion_states(base, *rows, group=4) is None  # 6 rows are not groups of 4
    mixed = rows[0].clone()
    mixed[1, -1] = (mixed[1, -1] + 1) % VOCAB  # row 1 no longer holds its group's prompt
    assert group_completion_states(base, mixed, *rows[1:], group=G) is None
    short = rollout_rows(prompt_lengths=(MIN_SHARED_TOKENS - 1, 5))
    assert group_completion_states(base, *short, group=G) is None
    base.gradient_checkpointing_enable()
    try:
        assert group_completion_states(base, *rows, group=G) is None  # checkpointed blocks run without a cache
    finally:
        base.gradient_checkpointing_disable()
    assert group_completion_states(base, *rows, group=G) is not None


@pytest.mark.parametrize("objective", ["grpo", "rloo", "ppo"])
def test_the_speed_plan_shares_the_prompt_of_each_group(objective):
    lora = MethodSection(type="lora", lora={"dropout": 0.0})
    training = TrainingSection(batch_size=8)  # the rows of a micro-batch: prompts x G
    on, why = choose_share_prefix(training, lora, CPU, objective, False, 40, None)
    assert on and "once per group" in why and "40" in why
    off, why = choose_share_prefix(training, lora, CPU, objective, False, MIN_SHARED_TOKENS - 1, None)
    assert not off and "shortest prompt" in why
    off, why = choose_share_prefix(training, lora, CPU, objective, False, 40, "dropout p=0.05 in x")
    assert not off and "dropout" in why
    assert not choose_share_prefix(training, lora, CPU, "dpo", False, 40, None)[0]
