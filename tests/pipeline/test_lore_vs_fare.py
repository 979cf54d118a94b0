"""On a tiny real setting at a large eps, LORE keeps clean embeddings within their margin; FARE drifts (paper Fig. 6/7)."""

from __future__ import annotations

import pytest
import torch

import lore
from lore import RobustStep

RHO, EPS, STEPS, K = 0.05, 64 / 255, 100, 5  # K = 5: the paper default, for both methods


def fraction_satisfied(encoder, reference, images):
    with torch.no_grad():
        ref = reference(images)
        return ((encoder(images) - ref).pow(2).sum(1) <= RHO * ref.pow(2).sum(1)).float().mean().item()


def clean_deviation(encoder, reference, images):
    with torch.no_grad():
        ref = reference(images)
        return ((encoder(images) - ref).pow(2).sum(1) / ref.pow(2).sum(1)).mean().item()


@pytest.mark.slow
def test_lore_keeps_the_constraint_where_fare_does_not(pretrained_encoder, digits_split, _pretrained):
    train, held_out = digits_split
    results = {}
    # the rate dual signal (1[outside] - alpha, unit scale) with Adam (torch's betas) at 3e-2 on standardized phi_0
    dual = dict(dual_signal="rate", init=1.0, dual_optimizer="adam", dual_lr=3e-2, dual_beta1=0.9)
    for method in (lore.fare(), lore.lore(RHO, preset="embedded", hidden=64, **dual)):
        encoder, head = pretrained_encoder
        encoder.load_state_dict(_pretrained[0])
        step = RobustStep(encoder, method, torch.optim.Adam(encoder.parameters(), lr=3e-4), eps=EPS, primal_steps=K)
        g = torch.Generator().manual_seed(0)
        deviations = []
        for i in range(STEPS):
            idx = torch.randint(0, len(train.labels), (64,), generator=g)
            step(train.images[idx], generator=g)
            if i in (0, STEPS - 1):
                deviations.append(clean_deviation(encoder, step.reference, held_out.images))
        with torch.no_grad():
            accuracy = (head(encoder(held_out.images)).argmax(1) == held_out.labels).float().mean().item()
        results[method.name] = (fraction_satisfied(encoder, step.reference, held_out.images), deviations, accuracy)

    lore_sat, lore_dev, lore_acc = results["lore"]
    fare_sat, fare_dev, fare_acc = results["fare"]
    assert lore_sat >= 0.6 and lore_sat >= fare_sat + 0.4, results
    assert fare_dev[1] > fare_dev[0] * 1.05 and fare_dev[1] > RHO * 4, results  # FARE's clean deviation grows
    assert lore_dev[1] < fare_dev[1] / 4, results
    assert lore_acc > fare_acc + 0.3, results  # the linear probe of phi_0 still reads LORE's embeddings
