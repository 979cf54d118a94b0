"""An undefended digits classifier (encoder + linear head) shared by the evaluation tests."""

import pytest
import torch

from lore import load_digits_images, pretrain_classifier, small_digits_encoder


@pytest.fixture(scope="session")
def _digits():
    torch.manual_seed(0)
    train, test = load_digits_images(16).split(held_out=0.25, seed=0)
    encoder = small_digits_encoder(embed_dim=32, width=16)
    head = pretrain_classifier(encoder, train, steps=200, seed=0)
    model = torch.nn.Sequential(encoder, head).eval().requires_grad_(False)
    return model, test.images[:200], test.labels[:200], test.images, test.labels


@pytest.fixture(scope="session")
def digits_classifier(_digits):
    """(model, 200 held-out images, their labels)."""
    return _digits[:3]


@pytest.fixture(scope="session")
def digits_held_out(_digits):
    """(model, all 449 held-out images, their labels), for comparisons that need many points."""
    return _digits[0], _digits[3], _digits[4]
