"""Real images that ship with scikit-learn (`load_digits`), and their fixed train / validation / test split.

No download is ever needed: the 1797 labelled 8x8 digit images come inside
scikit-learn. They are upsampled (bilinear) and replicated to RGB so that
image encoders and attacks see ordinary [B, 3, H, W] images in [0, 1].

The split (`Digits.splits`) is stratified by a fixed rule: a permutation of all 1797 positions is drawn from
`torch.Generator().manual_seed(seed)`; walking it from its end, each class's first ceil(25 %) digits go to test, its next
ceil(15 %) to validation, the rest to train. At seed 0 that is 454 test, 275 validation and 1068 train digits.
The embedded reference model (digits CLIP) is pretrained on train + validation; fine-tuning trains on train;
settings are chosen on validation; results are reported on test.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F

DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
SPLITS = ("train", "validation", "test")
"""The parts of the digits split, in the order the rule fills them: test first, validation, then train."""
SPLIT_PERCENT = {"test": 25, "validation": 15}
"""Each class's share of test and of validation, in percent, rounded up per class; train takes the rest."""


@dataclass(frozen=True)
class Digits:
    """The digits as tensors.

    Attributes:
        images: [N, 3, size, size] float32 in [0, 1].
        labels: [N] int64 in [0, 10).
        classnames: the ten digit names.
        index: [N] int64, each image's position in scikit-learn's `load_digits()` (None when unknown), so that
            which digits a model saw can be checked.
    """

    images: torch.Tensor
    labels: torch.Tensor
    classnames: tuple[str, ...] = DIGIT_NAMES
    index: Optional[torch.Tensor] = None

    def __len__(self) -> int:
        return len(self.labels)

    def select(self, positions: torch.Tensor) -> "Digits":
        """The digits at `positions` ([M] int64 positions into this set)."""
        index = None if self.index is None else self.index[positions]
        return Digits(self.images[positions], self.labels[positions], self.classnames, index)

    def splits(self, seed: int = 0) -> "DigitSplits":
        """The stratified train / validation / test split by the module's rule (deterministic in `seed`)."""
        parts = split_positions(self.labels, seed)
        return DigitSplits(**{name: self.select(parts[name]) for name in SPLITS})


@dataclass(frozen=True)
class DigitSplits:
    """The three disjoint parts of the digits (`Digits.splits`)."""

    train: Digits
    validation: Digits
    test: Digits

    def part(self, name: str) -> Digits:
        """One part by name: "train", "validation" or "test"."""
        if name not in SPLITS:
            raise ValueError(f"the digits split has parts {', '.join(SPLITS)}; got {name!r}")
        return getattr(self, name)

    def pretraining(self) -> Digits:
        """Train + validation: what the embedded reference model is pretrained on (never the test digits)."""
        joined = torch.cat([self.train.index, self.validation.index]) if self.train.index is not None else None
        return Digits(torch.cat([self.train.images, self.validation.images]),
                      torch.cat([self.train.labels, self.validation.labels]), self.train.classnames, joined)


def split_positions(labels: torch.Tensor, seed: int = 0) -> dict[str, torch.Tensor]:
    """Positions of each part of the stratified split of `labels` ([N] int64); each part sorted ascending.

    Walking one permutation of all positions (seeded `seed`) from its end, a class's first ceil(25 %) go to
    test, its next ceil(15 %) to validation, the rest to train. (From the end: until 2026-12-06 the held-out
    digits were the permutation's first 25 %, on which the `embedded` preset had been chosen; walking it from the
    end keeps every one of them out of test and validation at seed 0.)
    """
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    counts = torch.bincount(labels)
    quota = {name: [-(-int(n) * percent // 100) for n in counts] for name, percent in SPLIT_PERCENT.items()}
    seen = [0] * len(counts)
    parts: dict[str, list[int]] = {name: [] for name in SPLITS}
    for position in reversed(order.tolist()):
        c = int(labels[position])
        rank, seen[c] = seen[c], seen[c] + 1
        if rank < quota["test"][c]:
            parts["test"].append(position)
        elif rank < quota["test"][c] + quota["validation"][c]:
            parts["validation"].append(position)
        else:
            parts["train"].append(position)
    return {name: torch.tensor(sorted(positions), dtype=torch.long) for name, positions in parts.items()}


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
    labels = torch.tensor(data.target, dtype=torch.long)
    return Digits(images.expand(-1, 3, -1, -1).contiguous(), labels, DIGIT_NAMES, torch.arange(len(labels)))
