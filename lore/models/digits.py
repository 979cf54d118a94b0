"""Small encoders for the embedded digits: a conv net, its `ImageEncoder`, and a quick clean pretraining.

The images themselves are `lore.data.digits` (scikit-learn's bundled digits).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..data.digits import Digits
from .encoders import ImageEncoder


class SmallConvNet(nn.Module):
    """A small conv net for 3x32x32 inputs: [B, 3, H, W] -> [B, embed_dim] (GroupNorm, no batch statistics)."""

    def __init__(self, embed_dim: int = 64, width: int = 32) -> None:
        super().__init__()
        self.output_dim = embed_dim
        self.features = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1), nn.GroupNorm(4, width), nn.GELU(), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.GroupNorm(4, 2 * width), nn.GELU(), nn.MaxPool2d(2),
            nn.Conv2d(2 * width, 2 * width, 3, padding=1), nn.GroupNorm(4, 2 * width), nn.GELU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.proj = nn.Linear(2 * width, embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.features(x))


def small_digits_encoder(embed_dim: int = 64, width: int = 32) -> ImageEncoder:
    """An `ImageEncoder` around `SmallConvNet`, normalising with mean 0.5 / std 0.5."""
    return ImageEncoder(SmallConvNet(embed_dim, width), (0.5,) * 3, (0.5,) * 3, embed_dim=embed_dim)


def pretrain_classifier(
    encoder: nn.Module, data: Digits, *, steps: int = 200, batch_size: int = 128, lr: float = 3e-3, seed: int = 0
) -> nn.Linear:
    """Trains `encoder` + a linear head with cross-entropy on clean digits; returns the head.

    Gives the tests and demos a meaningful starting point phi_0 in seconds on a CPU.
    """
    generator = torch.Generator().manual_seed(seed)
    head = nn.Linear(encoder.embed_dim, 10)
    params = list(encoder.parameters()) + list(head.parameters())
    optimizer = torch.optim.Adam(params, lr=lr)
    encoder.train()
    for _ in range(steps):
        idx = torch.randint(0, len(data.labels), (batch_size,), generator=generator)
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(head(encoder(data.images[idx])), data.labels[idx]).backward()
        optimizer.step()
    return head
