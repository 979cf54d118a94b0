"""A tiny real setting shared by the lore tests: a small encoder pretrained on scikit-learn digits."""

from __future__ import annotations

import copy

import pytest
import torch

from lore import load_digits_images, pretrain_classifier, small_digits_encoder


@pytest.fixture(scope="session")
def digits_split():
    return load_digits_images(16).split(held_out=0.25, seed=0)


@pytest.fixture(scope="session")
def _pretrained(digits_split):
    train, _ = digits_split
    torch.manual_seed(0)
    encoder = small_digits_encoder(embed_dim=32, width=16)
    head = pretrain_classifier(encoder, train, steps=100, seed=0)
    return copy.deepcopy(encoder.state_dict()), head


@pytest.fixture
def pretrained_encoder(_pretrained):
    """A fresh copy of the pretrained digits encoder (phi_0) and its linear classifier head."""
    state, head = _pretrained
    encoder = small_digits_encoder(embed_dim=32, width=16)
    encoder.load_state_dict(state)
    return encoder, copy.deepcopy(head)
