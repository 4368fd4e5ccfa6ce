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
