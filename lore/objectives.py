"""What a method optimises and compares on one batch: the `Batch` it sees, the robust losses PGD maximises
and the encoder minimises, and the views a constraint compares (embeddings or zero-shot logits)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F

from constrained import sq_l2

from .heads import ZeroShotHead


@dataclass(frozen=True)
class Batch:
    """What a method may look at for one batch.

    Attributes:
        images: [B, C, H, W] clean images in [0, 1].
        reference: [B, D] frozen reference embeddings phi_0(x).
        labels: [B] int64 class labels (supervised methods only).
        head: zero-shot head mapping embeddings to logits (supervised methods only).
    """

    images: torch.Tensor
    reference: torch.Tensor
    labels: Optional[torch.Tensor] = None
    head: Optional[ZeroShotHead] = None


def embedding(embeddings: torch.Tensor, batch: Batch) -> torch.Tensor:
    """The identity view: constraints compare embeddings [B, D]."""
    return embeddings


def zero_shot_logits(embeddings: torch.Tensor, batch: Batch) -> torch.Tensor:
    """The logits view: [B, D] embeddings -> [B, C] zero-shot logits through `batch.head`."""
    if batch.head is None:
        raise ValueError("this method needs a zero-shot head: pass head=ZeroShotHead(...) to the trainer")
    return batch.head(embeddings)


def embedding_distance(adversarial: torch.Tensor, batch: Batch) -> torch.Tensor:
    """FARE's loss ||phi(x + delta) - phi_0(x)||^2 per sample, [B]."""
    return sq_l2(adversarial, batch.reference)


def zero_shot_cross_entropy(adversarial: torch.Tensor, batch: Batch) -> torch.Tensor:
    """TeCoA's loss CE(scale * cos(phi(x + delta), text_c), y) per sample, [B]."""
    if batch.labels is None:
        raise ValueError("this method is supervised: pass labels to the training step")
    logits = zero_shot_logits(adversarial, batch)
    labels = batch.labels
    if labels.dtype not in (torch.int64, torch.int32) or labels.shape != logits.shape[:1]:
        raise ValueError(f"labels must be integer class ids of shape [{logits.shape[0]}], got {labels.dtype} {tuple(labels.shape)}")
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= logits.shape[1]):
        raise ValueError(f"labels must lie in [0, {logits.shape[1] - 1}] (the head's classes), got values in "
                         f"[{int(labels.min())}, {int(labels.max())}]; ignored labels (-100) are not supported")
    return F.cross_entropy(logits, labels.long(), reduction="none")
