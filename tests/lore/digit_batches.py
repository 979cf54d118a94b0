"""Digit batches and a prototype zero-shot head for the step and method tests."""

import torch

from lore import ZeroShotHead


def batch_of(train, n=16, seed=0):
    idx = torch.randperm(len(train.labels), generator=torch.Generator().manual_seed(seed))[:n]
    return train.images[idx], train.labels[idx]


def prototype_head(encoder, train):
    """A zero-shot-style head from class-mean embeddings (the digits model has no text tower here)."""
    with torch.no_grad():
        emb = encoder(train.images[:500])
    return ZeroShotHead(torch.stack([emb[train.labels[:500] == c].mean(0) for c in range(10)]), scale=20.0)
