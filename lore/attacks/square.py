"""Square attack (Andriushchenko et al., ECCV 2020), l_inf, untargeted: a black-box random search.

Only logits are used (no gradients), so it is immune to gradient masking.
Written from the paper: start from vertical stripes of +-eps; at each query,
pick one random square per image (its own location; side from the fraction p
of pixels, p halved on AutoAttack's schedule) and set it to +-eps per
channel; keep the change if the margin loss z_y - max_{j != y} z_j decreases.
"""

from __future__ import annotations

import math
from typing import Callable, Optional

import torch

SCHEDULE = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)  # for 10,000 queries


def _margin(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    true = logits.gather(1, labels[:, None]).squeeze(1)
    other = logits.scatter(1, labels[:, None], float("-inf")).amax(1)
    return true - other


def _fraction(p_init: float, query: int, n_queries: int) -> float:
    rescaled = int(query / n_queries * 10_000)
    halvings = sum(rescaled > mark for mark in SCHEDULE)
    return p_init / 2**halvings


@torch.no_grad()
def square_attack(
    classifier: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    eps: float,
    n_queries: int = 1000,
    p_init: float = 0.8,
    generator: Optional[torch.Generator] = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Runs the l_inf Square attack with a budget of `n_queries` per image.

    Args:
        classifier: images [B, C, H, W] in [0, 1] -> logits [B, K].
        images: [B, C, H, W] the points to attack, in [0, 1].
        labels: [B] their int64 labels.
        eps: l_inf radius (pixel units).
        n_queries: model queries per image (the initialisation counts as one).
        p_init: initial fraction of pixels changed per query (AutoAttack: 0.8).
        generator: makes the search reproducible.

    Returns:
        (fooled [B] bool, adversarial images [B, C, H, W]).
    """
    device = images.device
    g = generator
    batch, channels, height, width = images.shape

    def rand(*shape):
        return torch.rand(shape, generator=g, device=g.device if g else device).to(device)

    signs = torch.where(rand(batch, channels, 1, width) < 0.5, -1.0, 1.0).to(images.dtype)
    x = (images + eps * signs).clamp(0, 1)
    margin = _margin(classifier(x), labels)
    for query in range(1, n_queries):
        active = (margin > 0).nonzero().flatten()
        if len(active) == 0:
            break
        p = _fraction(p_init, query, n_queries)
        side = max(1, min(height, width, int(round(math.sqrt(p * height * width)))))
        count = len(active)
        top = (rand(count) * (height - side + 1)).long().view(-1, 1, 1, 1)  # one square per image
        left = (rand(count) * (width - side + 1)).long().view(-1, 1, 1, 1)
        rows = torch.arange(height, device=device).view(1, 1, -1, 1)
        cols = torch.arange(width, device=device).view(1, 1, 1, -1)
        window = (rows >= top) & (rows < top + side) & (cols >= left) & (cols < left + side)
        base, clean = x[active], images[active]
        patch_signs = torch.where(rand(count, channels, 1, 1) < 0.5, -1.0, 1.0).to(images.dtype)
        candidate = torch.where(window, (clean + eps * patch_signs).clamp(0, 1), base)
        new_margin = _margin(classifier(candidate), labels[active])
        improved = new_margin < margin[active]
        x[active[improved]] = candidate[improved]
        margin[active[improved]] = new_margin[improved]
    return margin <= 0, x
