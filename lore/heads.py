"""Classification heads on top of embeddings: CLIP zero-shot and fixed linear heads."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class ZeroShotHead(nn.Module):
    """logits = scale * cos(embedding, class text embedding) + bias: CLIP's (and SigLIP's) zero-shot classifier.

    Args:
        class_embeddings: [C, D] one embedding per class (normalised here).
        scale: logit scale (CLIP: 100, TeCoA's temperature 1/100; a `transformers` model's own exp(logit_scale)).
        bias: added to every logit (SigLIP's logit_bias; 0 for CLIP). It moves no argmax, but SigLIP's sigmoid
            probabilities and losses read it.
    """

    def __init__(self, class_embeddings: torch.Tensor, scale: float = 100.0, bias: float = 0.0) -> None:
        super().__init__()
        if class_embeddings.dim() != 2 or class_embeddings.shape[0] < 2:
            raise ValueError(f"class_embeddings must have shape [C >= 2, D], got {tuple(class_embeddings.shape)}")
        if not scale > 0:
            raise ValueError(f"scale must be > 0, got {scale}")
        self.register_buffer("weight", F.normalize(class_embeddings.detach().float(), dim=1))
        self.scale = float(scale)
        self.bias = float(bias)

    @property
    def num_classes(self) -> int:
        return self.weight.shape[0]

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        """embeddings [B, D] -> logits [B, C]."""
        if embeddings.dim() != 2 or embeddings.shape[1] != self.weight.shape[1]:
            raise ValueError(f"embeddings must have shape [B, {self.weight.shape[1]}], got {tuple(embeddings.shape)}")
        return self.scale * F.normalize(embeddings, dim=1) @ self.weight.to(embeddings.dtype).T + self.bias


@torch.no_grad()
def class_text_embeddings(
    clip: nn.Module,
    tokenizer,
    classnames: Sequence[str],
    templates: Sequence[str],
) -> torch.Tensor:
    """Zero-shot class embeddings: the mean of the normalised template embeddings, per class.

    Args:
        clip: an open_clip model (anything with `encode_text`).
        tokenizer: its tokenizer.
        classnames: C class names.
        templates: prompt templates with one "{}" for the class name (see lore.data.zero_shot.PROMPT_TEMPLATES).

    Returns:
        [C, D] normalised class embeddings.
    """
    if not classnames or not templates:
        raise ValueError("classnames and templates must both be non-empty")
    bad = [t for t in templates if "{}" not in t]
    if bad:
        raise ValueError(f"every template needs a '{{}}' slot for the class name; got {bad[:3]}")
    device = next(clip.parameters()).device
    rows = []
    for name in classnames:
        tokens = tokenizer([t.format(name) for t in templates]).to(device)
        text = F.normalize(clip.encode_text(tokens).float(), dim=1)
        rows.append(F.normalize(text.mean(dim=0), dim=0))
    return torch.stack(rows)
