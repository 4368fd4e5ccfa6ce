import math

import torch

from tuneforge.data.render import IGNORE_INDEX
from tuneforge.objectives.losses import causal_lm_loss


def test_uniform_logits_give_log_vocab():
    vocab = 37
    logits = torch.zeros(2, 5, vocab)
    labels = torch.randint(0, vocab, (2, 5))
    assert math.isclose(float(causal_lm_loss(logits, labels)), math.log(vocab), rel_tol=1e-6)


def test_matches_hand_computation_with_mask_and_shift():
    torch.manual_seed(0)
    logits = torch.randn(1, 4, 6)
    labels = torch.tensor([[IGNORE_INDEX, 3, IGNORE_INDEX, 5]])
    logp = torch.log_softmax(logits, -1)
    # position 0 predicts label[1] = 3; position 2 predicts label[3] = 5
    expected = -(logp[0, 0, 3] + logp[0, 2, 5]) / 2
    assert torch.allclose(causal_lm_loss(logits, labels), expected)


def test_normalised_by_given_token_count():
    torch.manual_seed(0)
    logits = torch.randn(1, 4, 6)
    labels = torch.tensor([[1, 2, 3, 4]])
    mean = causal_lm_loss(logits, labels)
    assert torch.allclose(causal_lm_loss(logits, labels, num_items_in_batch=6), mean * 3 / 6)


def test_trained_positions_loss_equals_full_logits_loss_and_gradients():
    from tests.helpers.tiny import tiny_llama
    from tuneforge.config.schema import MethodSection
    from tuneforge.methods import apply_method
    from tuneforge.objectives.losses import (
        supports_trained_positions_loss,
        trained_positions_loss,
    )

    torch.manual_seed(0)
    model = apply_method(tiny_llama(320, tie=False), MethodSection(type="lora", lora={"r": 4, "dropout": 0.0}))
    for p in model.parameters():  # make the adapter non-trivial so its gradients are compared too
        if p.requires_grad:
            torch.nn.init.normal_(p, std=0.05)
    ids = torch.randint(3, 320, (3, 11))
    mask = torch.ones_like(ids)
    mask[2, 8:] = 0
    labels = ids.clone()
    labels[:, :5] = IGNORE_INDEX
    labels[mask == 0] = IGNORE_INDEX
    base = model.get_base_model()
    assert supports_trained_positions_loss(base)

    full = causal_lm_loss(model(input_ids=ids, attention_mask=mask).logits, labels, 17)
    full.backward()
    g_full = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    model.zero_grad()
    fast = trained_positions_loss(base, {"input_ids": ids, "attention_mask": mask}, labels, 17)
    fast.backward()
    assert torch.allclose(fast, full, atol=1e-6)
    for n, p in model.named_parameters():
        if p.requires_grad:
            assert torch.allclose(p.grad, g_full[n], atol=1e-6), n
