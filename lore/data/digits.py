"""Real images that ship with scikit-learn (`load_digits`).

No download is ever needed: the 1797 labelled 8x8 digit images come inside
scikit-learn. They are upsampled (bilinear) and replicated to RGB so that
image encoders and attacks see ordinary [B, 3, H, W] images in [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

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
