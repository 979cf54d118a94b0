"""APGD against torchattacks (an independent implementation) and its invariants."""

from __future__ import annotations

import hypothesis.strategies as st
import pytest
import torch
import torchattacks
from hypothesis import given, settings

from lore.attacks import apgd_ce, apgd_dlr_targeted, checkpoints, dlr_targeted_loss, square_attack

EPS = 8 / 255


def accuracy(model, x, y):
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


def test_step_size_checkpoints_match_the_paper():
    # p = 0, 0.22, 0.41, 0.57, 0.70, 0.80, 0.87, 0.93, 0.99 for 100 iterations
    assert checkpoints(100) == [22, 41, 57, 70, 80, 87, 93, 99]


SEEDS = (0, 1)  # both sides are random-start attacks: compare means over the same seeds, on all 449 held-out digits


@pytest.mark.slow
def test_apgd_ce_is_at_least_as_strong_as_torchattacks(digits_held_out):
    model, x, y = digits_held_out
    ours, theirs = [], []
    for seed in SEEDS:
        fooled, adversarial = apgd_ce(model, x, y, eps=EPS, n_iter=100, generator=torch.Generator().manual_seed(seed))
        ours.append(1 - fooled.float().mean().item())
        # the returned images fool the model exactly where we say they do
        assert torch.equal(model(adversarial).argmax(1) != y, fooled)
        reference = torchattacks.APGD(model, norm="Linf", eps=EPS, steps=100, n_restarts=1, loss="ce", seed=seed)
        theirs.append(accuracy(model, reference(x, y), y))
    assert 0.1 < min(theirs) and max(theirs) < 0.8  # a regime where the attacks are tested, not saturated
    assert sum(ours) / len(ours) <= sum(theirs) / len(theirs) + 0.01, (ours, theirs)


@pytest.mark.slow
def test_apgd_dlr_targeted_is_at_least_as_strong_as_torchattacks_apgdt(digits_held_out):
    model, x, y = digits_held_out
    ours, theirs = [], []
    for seed in SEEDS:
        fooled, _ = apgd_dlr_targeted(model, x, y, eps=EPS, n_iter=100, n_targets=9, generator=torch.Generator().manual_seed(seed))
        ours.append(1 - fooled.float().mean().item())
        reference = torchattacks.APGDT(model, norm="Linf", eps=EPS, steps=100, n_restarts=1, n_classes=10, seed=seed)
        theirs.append(accuracy(model, reference(x, y), y))
    assert sum(ours) / len(ours) <= sum(theirs) / len(theirs) + 0.01, (ours, theirs)


@settings(max_examples=12, deadline=None)
@given(eps=st.sampled_from([2 / 255, 8 / 255, 32 / 255]), n=st.integers(1, 9), seed=st.integers(0, 100))
def test_attacks_stay_in_the_ball_and_never_raise_accuracy(digits_classifier, eps, n, seed):
    model, x, y = digits_classifier
    x, y = x[:n], y[:n]
    g = torch.Generator().manual_seed(seed)
    clean = accuracy(model, x, y)
    for _, adversarial in (
        apgd_ce(model, x, y, eps=eps, n_iter=5, generator=g),
        apgd_dlr_targeted(model, x, y, eps=eps, n_iter=5, n_targets=2, generator=g),
        square_attack(model, x, y, eps=eps, n_queries=20, generator=g),
    ):
        assert (adversarial - x).abs().max() <= eps + 1e-6
        assert adversarial.min() >= 0 and adversarial.max() <= 1
        assert accuracy(model, adversarial, y) <= clean + 1e-9


def test_dlr_targeted_loss_formula():
    logits = torch.tensor([[4.0, 3.0, 2.0, 1.0, 0.0]])
    # y = 0, t = 2: -(4 - 2) / (4 - (2 + 1) / 2)
    assert dlr_targeted_loss(logits, torch.tensor([0]), torch.tensor([2])).item() == pytest.approx(-2 / 2.5)
    with pytest.raises(ValueError, match="at least 4 classes"):
        dlr_targeted_loss(torch.zeros(1, 3), torch.tensor([0]), torch.tensor([1]))


def test_square_attack_fools_an_undefended_model_at_a_large_eps(digits_classifier):
    model, x, y = digits_classifier
    fooled, adversarial = square_attack(model, x[:64], y[:64], eps=48 / 255, n_queries=300,
                                        generator=torch.Generator().manual_seed(0))
    assert fooled.float().mean() > 0.5
    assert torch.equal(model(adversarial).argmax(1) != y[:64], fooled)


def test_target_classes_skip_the_true_class():
    from lore.attacks.auto_pgd import target_classes

    ranking = torch.tensor([[3, 1, 2, 0], [0, 2, 1, 3]])  # classes by decreasing clean logit
    labels = torch.tensor([1, 0])
    assert target_classes(ranking, labels, 1).tolist() == [3, 2]
    assert target_classes(ranking, labels, 2).tolist() == [2, 1]
