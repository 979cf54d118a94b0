"""The six methods as specifications: their losses, constraints and what each trains (`RobustStep` itself is
tested in tests/lore/test_step.py)."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F

import lore
from constrained import Constraint, FixedMargin, l2
from digit_batches import batch_of, prototype_head
from lore import Batch, Method, RobustStep, ZeroShotHead, embedding_distance, naive, tecoa, tecoa_kl, tecoa_l2


def test_the_six_methods_are_importable_and_distinct():
    names = {factory().name for factory in (lore.fare, lore.naive, lore.lore, lore.tecoa, lore.tecoa_l2, lore.tecoa_kl)}
    assert names == {"fare", "naive", "lore", "tecoa", "tecoa-l2", "tecoa-kl"}
    assert set(lore.METHODS) == names


def test_tecoa_loss_matches_a_hand_computation():
    embeddings = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    text = torch.tensor([[1.0, 0.0], [0.0, 2.0]])  # unnormalised on purpose
    labels = torch.tensor([1, 1])
    batch = Batch(images=torch.zeros(2, 3, 1, 1), reference=embeddings, labels=labels, head=ZeroShotHead(text, scale=10.0))
    # cosines: sample 0 -> (1, 0), sample 1 -> (0.6, 0.8); logits = 10 * cos
    expected = [
        -(10 * 0.0) + torch.logsumexp(torch.tensor([10.0, 0.0]), 0).item(),
        -(10 * 0.8) + torch.logsumexp(torch.tensor([6.0, 8.0]), 0).item(),
    ]
    assert tecoa().robust_loss(embeddings, batch).tolist() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("factory", [naive, tecoa, tecoa_l2, tecoa_kl])
def test_every_method_trains_on_digits(factory, pretrained_encoder, digits_split):
    """Every step's numbers are finite, the encoder moves, a constrained method's multiplier moves off its start
    and naive's weight stays the fixed weight. (Its robust loss need not fall within a few steps: each step
    attacks the updated encoder afresh, and on this batch it rose for naive and TeCoA+l2 at lr 3e-4.)"""
    train, _ = digits_split
    encoder, _ = pretrained_encoder
    start = copy.deepcopy(encoder)
    head = prototype_head(encoder, train)
    kwargs = {"hidden": 16} if factory in (tecoa_l2, tecoa_kl) else {}
    method = factory(**kwargs)
    step = RobustStep(encoder, method, torch.optim.Adam(encoder.parameters(), lr=1e-3), eps=8 / 255,
                      head=head, pgd_steps=3, primal_steps=2)
    images, labels = batch_of(train, n=32, seed=0)
    outs = [step(images, labels=labels) for _ in range(6)]
    assert all(math.isfinite(v) for out in outs for v in out.as_dict().values())
    assert any(not torch.equal(p, q) for p, q in zip(encoder.parameters(), start.parameters()))
    if method.constraint is None:
        return
    first, last = outs[0].as_dict()["clean/multiplier_mean"], outs[-1].as_dict()["clean/multiplier_mean"]
    assert 0.0 <= outs[-1].constraint.satisfied_fraction <= 1.0
    if factory is naive:
        assert first == last == pytest.approx(method.formulation.weight)
    else:
        assert last != pytest.approx(first, rel=1e-6, abs=1e-9)


def test_a_seventh_method_needs_no_library_change(pretrained_encoder, digits_split):
    """FARE's objective with an l2 (not squared) proximity bound, a fixed tolerance and a scalar lambda, written in
    the test alone. Its numbers have closed forms: the encoder starts at phi_0, so every clean distance is 0 and
    every violation ||phi(x) - phi_0(x)|| - 0.5 is -0.5; the scalar lambda prices the mean violation, so one plain
    ascent step at the default dual lr 5e-4 takes it from 1 to 1 - 0.5 * 5e-4; and the encoder moves."""
    from constrained import ScalarMultiplier

    my_method = Method(
        name="fare-l2-ball",
        robust_loss=embedding_distance,
        constraint=Constraint(d=l2, margin=FixedMargin(0.5), name="clean"),
        multiplier=lambda dim: ScalarMultiplier(init=1.0),
    )
    train, _ = digits_split
    encoder, _ = pretrained_encoder
    before = [p.detach().clone() for p in encoder.parameters()]
    step = RobustStep(encoder, my_method, torch.optim.Adam(encoder.parameters(), lr=1e-3), eps=8 / 255, pgd_steps=2,
                      primal_steps=1)
    numbers = step(batch_of(train)[0]).as_dict()
    assert numbers["clean/violation_mean"] == pytest.approx(-0.5, abs=1e-6)
    assert numbers["clean/violation_max"] == pytest.approx(-0.5, abs=1e-6)
    assert numbers["clean/satisfied_fraction"] == 1.0
    assert float(step.multiplier.weight.detach()) == pytest.approx(1.0 - 0.5 * 5e-4, abs=1e-7)
    assert any(not torch.equal(a, b.detach()) for a, b in zip(before, encoder.parameters()))


def test_tecoa_kl_constrains_zero_shot_predictions(pretrained_encoder, digits_split):
    """The KL constraint compares predictive distributions, so it is zero at the start."""
    train, _ = digits_split
    encoder, _ = pretrained_encoder
    head = prototype_head(encoder, train)
    images, labels = batch_of(train)
    method = tecoa_kl(0.1, hidden=16)
    with torch.no_grad():
        emb = encoder(images)
        batch = Batch(images, emb, labels, head)
        violation = method.constraint.violation(method.view(emb, batch), method.view(emb, batch))
        entropy = -(F.softmax(head(emb), 1) * F.log_softmax(head(emb), 1)).sum(1)
    assert torch.allclose(violation, -0.1 * entropy, atol=1e-5)


@pytest.mark.parametrize("labels", [torch.tensor([1, -100]), torch.tensor([0, 2])])
def test_tecoa_refuses_ignored_or_out_of_range_labels_instead_of_a_zero_loss(labels):
    embeddings = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    head = ZeroShotHead(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), scale=10.0)
    batch = Batch(images=torch.zeros(2, 3, 1, 1), reference=embeddings, labels=labels, head=head)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 1\]"):
        tecoa().robust_loss(embeddings, batch)


