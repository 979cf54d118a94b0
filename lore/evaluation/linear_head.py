"""A fixed linear head fitted on clean features, for encoders without a text tower (DINOv2)."""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn


def fit_linear_head(features: torch.Tensor, labels: torch.Tensor, *, num_classes: Optional[int] = None,
                    weight_decay: float = 1e-4, max_iter: int = 200) -> nn.Linear:
    """Multinomial logistic regression by L-BFGS on standardised features.

    Args:
        features: [N, D] clean features; labels: [N] int64 classes in [0, K).
        num_classes: K (default: the largest label + 1); pass it so that classes absent from the sample
            still get a row (their logits stay at the bias).
        weight_decay: L2 penalty on the weights.
        max_iter: L-BFGS iterations.

    Returns:
        nn.Linear(D, K) taking raw features (the standardisation is folded in).
    """
    if features.dim() != 2 or features.shape[0] != labels.shape[0]:
        raise ValueError(f"features [N, D] and labels [N] must agree, got {tuple(features.shape)} and {tuple(labels.shape)}")
    features = features.detach().float()
    mean, std = features.mean(0), features.std(0).clamp_min(1e-6)
    z = (features - mean) / std
    classes = int(labels.max()) + 1 if num_classes is None else num_classes
    if labels.min() < 0 or labels.max() >= classes:
        raise ValueError(f"labels must lie in [0, {classes}), got [{int(labels.min())}, {int(labels.max())}]")
    linear = nn.Linear(features.shape[1], classes).to(features.device)
    nn.init.zeros_(linear.weight)
    nn.init.zeros_(linear.bias)
    optimizer = torch.optim.LBFGS(linear.parameters(), max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = F.cross_entropy(linear(z), labels) + weight_decay * linear.weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    head = nn.Linear(features.shape[1], classes).to(features.device)
    with torch.no_grad():  # fold (x - mean) / std into the weights
        head.weight.copy_(linear.weight / std)
        head.bias.copy_(linear.bias - (linear.weight * (mean / std)).sum(1))
    return head.requires_grad_(False)
