"""FrozenReference: a frozen, eval-mode snapshot of the starting encoder."""

from __future__ import annotations

import torch

from lore import FrozenReference, ImageEncoder


def dropout_encoder():
    torch.manual_seed(0)
    backbone = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, 8), torch.nn.Dropout(0.5))
    return ImageEncoder(backbone, (0.5,) * 3, (0.25,) * 3, embed_dim=8)


def test_reference_stays_fixed_while_the_encoder_trains():
    encoder = dropout_encoder()
    images = torch.rand(5, 3, 4, 4)
    reference = FrozenReference(encoder)
    encoder.eval()
    before = encoder(images).detach()
    assert torch.allclose(reference(images), before)
    optimizer = torch.optim.SGD(encoder.parameters(), lr=0.5)
    encoder.train()
    for _ in range(3):
        optimizer.zero_grad()
        encoder(images).pow(2).sum().backward()
        optimizer.step()
    assert torch.allclose(reference(images), before)  # eval mode: dropout off, weights frozen
    assert encoder.training  # the live module's mode is restored
    assert not reference(images).requires_grad
    # the snapshot is not a parameter anybody can optimise
    assert list(reference.parameters()) == []
