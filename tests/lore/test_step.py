"""RobustStep: how many attacks, encoder forwards and updates one batch costs, per method, as each method's
authors trained it (FARE and TeCoA: one update per adversarial batch) or with K updates (the equal-updates
control, and the constrained methods)."""

from __future__ import annotations

import pytest
import torch

import lore
from lore import RobustStep, ZeroShotHead
from lore.reference import FrozenReference


class Counted:
    """Counts the encoder's forwards (its own and phi_0's, told apart) and the optimizer's steps."""

    def __init__(self, encoder, reference, optimizer):
        self.forwards = self.reference_forwards = self.updates = 0
        encoder.register_forward_hook(lambda *_: self._add("forwards"))
        reference.register_forward_hook(lambda *_: self._add("reference_forwards"))
        optimizer.register_step_post_hook(lambda *_: self._add("updates"))

    def _add(self, name):
        setattr(self, name, getattr(self, name) + 1)

    @property
    def encoder_forwards(self) -> int:
        """The trained encoder's forwards (phi_0's run through the same module, by `functional_call`)."""
        return self.forwards - self.reference_forwards


def _count(pretrained_encoder, digits_split, method, **step):
    import copy

    encoder = copy.deepcopy(pretrained_encoder[0])
    reference = FrozenReference(encoder)
    optimizer = torch.optim.SGD(encoder.parameters(), lr=0.01)
    counted = Counted(encoder, reference, optimizer)
    train, _ = digits_split
    head = ZeroShotHead(torch.randn(10, 32, generator=torch.Generator().manual_seed(0)), scale=20.0)
    robust = RobustStep(encoder, method, optimizer, eps=8 / 255, reference=reference, head=head, pgd_steps=10, **step)
    robust(train.images[:8], labels=train.labels[:8], generator=torch.Generator().manual_seed(0))
    return counted, robust


@pytest.mark.parametrize("factory", [lore.fare, lore.tecoa])
def test_fare_and_tecoa_take_their_authors_one_update_per_adversarial_batch(pretrained_encoder, digits_split, factory):
    """Every method took K = 5 updates on each adversarial batch, and FARE ran a clean forward it only logged:
    17 encoder forwards per batch. As RobustVLM trains FARE: one attack (PGD-10: 10 forwards), one update (1)."""
    counted, step = _count(pretrained_encoder, digits_split, factory())
    assert step.primal_steps == 1 and counted.updates == 1
    assert counted.encoder_forwards == 11 and counted.reference_forwards == 1


@pytest.mark.parametrize("factory", [lore.fare, lore.tecoa])
def test_the_equal_updates_control_takes_k(pretrained_encoder, digits_split, factory):
    counted, step = _count(pretrained_encoder, digits_split, factory(), primal_steps=5)
    assert step.primal_steps == 5 and counted.updates == 5
    assert counted.encoder_forwards == 10 + 5 and counted.reference_forwards == 1


def test_constrained_methods_keep_k_by_default(pretrained_encoder, digits_split):
    counted, step = _count(pretrained_encoder, digits_split, lore.lore(0.1, hidden=16))
    assert step.primal_steps == 5 and counted.updates == 5


def test_the_clean_distance_of_an_unconstrained_method_is_measured_only_when_asked(pretrained_encoder, digits_split):
    _, step = _count(pretrained_encoder, digits_split, lore.fare())
    counted, measuring = _count(pretrained_encoder, digits_split, lore.fare(), measure_clean=True)
    assert counted.encoder_forwards == 12  # the extra no-grad clean forward that only logs
    assert measuring.measure_clean and not step.measure_clean
