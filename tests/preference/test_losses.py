"""Preference losses: closed forms at init, and equality with TRL's public loss methods or a hand-written reference."""

import math
from types import SimpleNamespace

import pytest
import torch

from tuneforge.objectives.preference_losses import (
    bradley_terry_loss,
    dpo_loss,
    kto_kl_estimate,
    kto_loss,
    orpo_log_odds,
    orpo_loss,
    orpo_odds_ratio_loss,
    pair_accuracy,
    simpo_loss,
)

LN2 = math.log(2)


def logps(n=6, seed=0, scale=20.0):
    g = torch.Generator().manual_seed(seed)
    return -torch.rand(n, generator=g, dtype=torch.float64) * scale - 0.5


# ---- closed forms at init (policy = reference) ------------------------------------------------------
@pytest.mark.parametrize("loss_type", ["sigmoid", "robust", "conservative"])
@pytest.mark.parametrize("beta", [0.1, 0.5])
def test_dpo_family_is_ln2_at_init(loss_type, beta):
    c, r = logps(seed=1), logps(seed=2)
    out = dpo_loss(
        c, r, c.clone(), r.clone(), beta=beta, loss_type=loss_type, label_smoothing=0.2
    )
    assert torch.allclose(out, torch.full_like(out, LN2))


@pytest.mark.parametrize("beta", [0.1, 0.25, 1.0])
def test_ipo_is_one_over_four_beta_squared_at_init(beta):
    c, r = logps(seed=1), logps(seed=2)
    lengths = torch.tensor([3, 5, 7, 9, 11, 13], dtype=torch.float64)
    out = dpo_loss(
        c,
        r,
        c,
        r,
        beta=beta,
        loss_type="ipo",
        chosen_lengths=lengths,
        rejected_lengths=lengths + 1,
    )
    assert torch.allclose(out, torch.full_like(out, 1 / (4 * beta**2)))


def test_hinge_is_one_at_init():
    c, r = logps(seed=1), logps(seed=2)
    assert torch.allclose(
        dpo_loss(c, r, c, r, beta=0.1, loss_type="hinge"),
        torch.ones(6, dtype=torch.float64),
    )


def test_kto_terms_are_one_half_at_init():
    p = logps()
    desirable = torch.tensor([1, 0, 1, 0, 1, 1], dtype=torch.bool)
    kl = kto_kl_estimate(p, p)
    assert kl.item() == 0.0
    out = kto_loss(p, p, desirable, kl, beta=0.1)
    assert torch.allclose(out, torch.full_like(out, 0.5))
    weighted = kto_loss(
        p, p, desirable, kl, beta=0.1, desirable_weight=2.0, undesirable_weight=0.5
    )
    assert torch.allclose(weighted, torch.where(desirable, 1.0, 0.25).double())


def test_orpo_odds_ratio_term_is_ln2_for_equal_means():
    avg = torch.tensor([-0.1, -1.0, -3.0, -7.5], dtype=torch.float64)
    assert torch.allclose(
        orpo_odds_ratio_loss(avg, avg.clone()),
        torch.full((4,), LN2, dtype=torch.float64),
    )


@pytest.mark.parametrize("gamma", [0.0, 0.5, 1.6])
def test_simpo_is_log_one_plus_e_gamma_for_equal_averages(gamma):
    avg = torch.tensor([-0.3, -2.0, -5.0], dtype=torch.float64)
    out = simpo_loss(avg, avg.clone(), beta=2.0, gamma=gamma)
    assert torch.allclose(out, torch.full_like(out, math.log(1 + math.exp(gamma))))


def test_bradley_terry_is_ln2_for_equal_rewards_and_counts_accuracy():
    r = torch.zeros(5)
    assert torch.allclose(bradley_terry_loss(r, r), torch.full((5,), LN2))
    chosen = torch.tensor([2.0, -1.0, 0.5, 0.5])
    rejected = torch.tensor([1.0, 0.0, 0.5, -3.0])
    assert (
        pair_accuracy(chosen, rejected).item() == 0.5
    )  # right, wrong, tie (wrong), right
    # margin: -log sigmoid(r_c - r_r - m)
    assert bradley_terry_loss(
        torch.tensor([1.0]), torch.tensor([0.0]), margin=1.0
    ).item() == pytest.approx(LN2)


# ---- hand-written references (plain math, straight from the papers) --------------------------------
def _sig(x):
    return 1 / (1 + math.exp(-x))


def ref_dpo(pc, pr, rc, rr, beta, kind, eps, lc, lr):
    d = (pc - rc) - (pr - rr)
    if kind == "sigmoid":
        return -math.log(_sig(beta * d))
    if kind == "conservative":
        return -(1 - eps) * math.log(_sig(beta * d)) - eps * math.log(_sig(-beta * d))
    if kind == "robust":
        return (
            -(1 - eps) * math.log(_sig(beta * d)) + eps * math.log(_sig(-beta * d))
        ) / (1 - 2 * eps)
    if kind == "hinge":
        return max(0.0, 1 - beta * d)
    if kind == "ipo":
        return ((pc - rc) / lc - (pr - rr) / lr - 1 / (2 * beta)) ** 2
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["sigmoid", "conservative", "robust", "hinge", "ipo"])
def test_dpo_variants_equal_hand_written_reference(kind):
    pc, pr, rc, rr = logps(seed=3), logps(seed=4), logps(seed=5), logps(seed=6)
    lc = torch.tensor([4.0, 9, 2, 7, 5, 3], dtype=torch.float64)
    lr = torch.tensor([6.0, 3, 8, 2, 5, 4], dtype=torch.float64)
    beta, eps = 0.3, 0.15
    ours = dpo_loss(
        pc,
        pr,
        rc,
        rr,
        beta=beta,
        loss_type=kind,
        label_smoothing=eps,
        chosen_lengths=lc,
        rejected_lengths=lr,
    )
    ref = [
        ref_dpo(
            *(t[i].item() for t in (pc, pr, rc, rr)),
            beta,
            kind,
            eps,
            lc[i].item(),
            lr[i].item(),
        )
        for i in range(6)
    ]
    assert ours.tolist() == pytest.approx(ref, rel=1e-9, abs=1e-12)


def test_kto_equals_hand_written_reference():
    p, ref = logps(seed=7, scale=5), logps(seed=8, scale=5)
    kl_p, kl_ref = logps(seed=9, scale=5), logps(seed=10, scale=5)
    desirable = torch.tensor([1, 0, 1, 0, 0, 1], dtype=torch.bool)
    beta, wd, wu = 0.2, 1.5, 0.7
    z0 = max(0.0, sum(a - b for a, b in zip(kl_p.tolist(), kl_ref.tolist())) / 6)
    expected = [
        wd * (1 - _sig(beta * ((a - b) - z0)))
        if d
        else wu * (1 - _sig(beta * (z0 - (a - b))))
        for a, b, d in zip(p.tolist(), ref.tolist(), desirable.tolist())
    ]
    kl = kto_kl_estimate(kl_p, kl_ref)
    assert kl.item() == pytest.approx(z0)
    ours = kto_loss(
        p, ref, desirable, kl, beta=beta, desirable_weight=wd, undesirable_weight=wu
    )
    assert ours.tolist() == pytest.approx(expected, rel=1e-9)


def test_orpo_equals_hand_written_reference():
    c = torch.tensor([-0.2, -1.5, -0.05, -4.0], dtype=torch.float64)
    r = torch.tensor([-0.9, -0.4, -2.5, -4.0], dtype=torch.float64)
    nll = torch.tensor([0.2, 1.5, 0.05, 4.0], dtype=torch.float64)

    def log_odds(lp):
        p = math.exp(lp)
        return math.log(p / (1 - p))

    expected = [
        n - 0.25 * math.log(_sig(log_odds(a) - log_odds(b)))
        for n, a, b in zip(nll.tolist(), c.tolist(), r.tolist())
    ]
    assert orpo_loss(nll, c, r, orpo_lambda=0.25).tolist() == pytest.approx(
        expected, rel=1e-9
    )


def test_simpo_equals_hand_written_reference():
    c, r = logps(seed=11, scale=3), logps(seed=12, scale=3)
    beta, gamma, eps = 2.5, 1.2, 0.1
    expected = []
    for a, b in zip(c.tolist(), r.tolist()):
        z = beta * (a - b) - gamma
        expected.append(-(1 - eps) * math.log(_sig(z)) - eps * math.log(_sig(-z)))
    assert simpo_loss(
        c, r, beta=beta, gamma=gamma, label_smoothing=eps
    ).tolist() == pytest.approx(expected, rel=1e-9)


# ---- contract tests against TRL's own public loss methods (pinned to the TRL range in pyproject) -----
def _trl_stand_in(**attrs):
    """TRL's loss methods read only these attributes of the trainer; no trainer (and no model) is needed."""
    return SimpleNamespace(
        accelerator=SimpleNamespace(device=torch.device("cpu")), **attrs
    )


def test_orpo_odds_ratio_equals_trl():
    pytest.importorskip("trl")
    from trl.experimental.orpo import ORPOTrainer

    c = torch.tensor([-0.2, -1.5, -0.05, -4.0, -0.7])
    r = torch.tensor([-0.9, -0.4, -2.5, -4.0, -0.7])
    beta = 0.1  # TRL's ORPO calls lambda "beta"
    losses, *_, log_odds_mean = ORPOTrainer.odds_ratio_loss(
        _trl_stand_in(beta=beta), c, r
    )
    # TRL returns beta * log sigmoid(log odds) and subtracts it from the NLL; ours is -log sigmoid(...) times lambda
    assert torch.allclose(-losses, beta * orpo_odds_ratio_loss(c, r), atol=1e-6)
    assert torch.allclose(log_odds_mean, orpo_log_odds(c, r).mean(), atol=1e-6)


@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_simpo_equals_trl_cpo_simpo(eps):
    pytest.importorskip("trl")
    from trl.experimental.cpo import CPOTrainer

    c, r = logps(seed=13, scale=3).float(), logps(seed=14, scale=3).float()
    beta, gamma = 2.0, 1.0
    stand_in = _trl_stand_in(
        beta=beta, simpo_gamma=gamma, label_smoothing=eps, loss_type="simpo", alpha=0.0
    )
    trl_losses, trl_chosen_rewards, _ = CPOTrainer.cpo_loss(stand_in, c, r)
    assert torch.allclose(
        simpo_loss(c, r, beta=beta, gamma=gamma, label_smoothing=eps),
        trl_losses,
        atol=1e-6,
    )
    assert torch.allclose(trl_chosen_rewards, beta * c)


@pytest.mark.parametrize("kind", ["sigmoid", "hinge", "ipo"])
def test_reference_free_dpo_variants_equal_trl_cpo(kind):
    """With a zero reference and unit lengths our DPO variants reduce to TRL's CPO losses of the same name."""
    pytest.importorskip("trl")
    from trl.experimental.cpo import CPOTrainer

    c, r = logps(seed=15, scale=2).float(), logps(seed=16, scale=2).float()
    beta = 0.4
    stand_in = _trl_stand_in(
        beta=beta, simpo_gamma=0.0, label_smoothing=0.0, loss_type=kind, alpha=0.0
    )
    trl_losses, *_ = CPOTrainer.cpo_loss(stand_in, c, r)
    zero, ones = torch.zeros_like(c), torch.ones_like(c)
    ours = dpo_loss(
        c,
        r,
        zero,
        zero,
        beta=beta,
        loss_type=kind,
        chosen_lengths=ones,
        rejected_lengths=ones,
    )
    assert torch.allclose(ours, trl_losses, atol=1e-5)
