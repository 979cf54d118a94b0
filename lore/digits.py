"""Real images that ship with scikit-learn (`load_digits`), and a small encoder for them.

No download is ever needed: the 1797 labelled 8x8 digit images come inside
scikit-learn. They are upsampled (bilinear) and replicated to RGB so that
image encoders and attacks see ordinary [B, 3, H, W] images in [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .encoders import ImageEncoder

DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


@dataclass(frozen=True)
class Digits:
    """The digits as tensors.

    Attributes:
        images: [N, 3, size, size] float32 in [0, 1].
        labels: [N] int64 in [0, 10).
        classnames: the ten digit names.
    """

    images: torch.Tensor
    labels: torch.Tensor
    classnames: tuple[str, ...] = DIGIT_NAMES

    def split(self, held_out: float = 0.25, seed: int = 0) -> tuple["Digits", "Digits"]:
        """A deterministic (train, held-out) split; the held-out part is never used for training."""
        if not 0 < held_out < 1:
            raise ValueError(f"held_out must be in (0, 1), got {held_out}")
        order = torch.randperm(len(self.labels), generator=torch.Generator().manual_seed(seed))
        n_test = int(round(held_out * len(order)))
        test, train = order[:n_test], order[n_test:]
        return (Digits(self.images[train], self.labels[train]), Digits(self.images[test], self.labels[test]))


def load_digits_images(size: int = 32) -> Digits:
    """scikit-learn's digits as [N, 3, size, size] RGB images in [0, 1].

    Args:
        size: output resolution (>= 8), bilinear upsampling of the 8x8 originals.
    """
    from sklearn.datasets import load_digits

    if size < 8:
        raise ValueError(f"size must be >= 8, got {size}")
    data = load_digits()
    images = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 16.0
    images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False).clamp(0, 1)
    return Digits(images.expand(-1, 3, -1, -1).contiguous(), torch.tensor(data.target, dtype=torch.long))


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
