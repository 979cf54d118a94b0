"""FrozenReference: a frozen, eval-mode snapshot of the starting encoder, with an optional cache."""

from __future__ import annotations

import pytest
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


def test_cache_skips_the_forward_and_returns_the_same_values():
    encoder = dropout_encoder()
    images = torch.rand(6, 3, 4, 4)
    reference = FrozenReference(encoder, cache_size=10)
    calls = []
    hook = encoder.backbone.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    first = reference(images, torch.arange(6))
    again = reference(images[2:5], torch.tensor([2, 3, 4]))
    mixed = reference(torch.cat([images[:2], torch.rand(1, 3, 4, 4)]), torch.tensor([0, 1, 7]))
    hook.remove()
    assert calls == [6, 1]  # only the unseen index 7 was embedded again
    assert torch.allclose(again, first[2:5]) and torch.allclose(mixed[:2], first[:2])
    with pytest.raises(ValueError, match=r"indices must lie in \[0, 10\)"):
        reference(images[:1], torch.tensor([10]))
