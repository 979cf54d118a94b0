"""Gradient-masking checks run before an attack, in the spirit of AutoAttack's own checks.

Each check warns (`GradientMaskingWarning`) instead of failing: the attack
still runs, but its numbers deserve suspicion.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F


class GradientMaskingWarning(UserWarning):
    """The model shows a sign that gradient-based attacks may be unreliable on it."""


def check_gradient_masking(classifier, images: torch.Tensor, labels: torch.Tensor) -> list[str]:
    """Warns when the classifier is random between calls, returns probabilities, or has zero input gradients.

    Args:
        classifier: images [B, C, H, W] in [0, 1] -> logits [B, K].
        images: [B, C, H, W] a small batch to probe with, in [0, 1].
        labels: [B] their int64 labels.

    Returns:
        The messages of the warnings raised (empty when all checks pass).
    """
    messages = []
    with torch.no_grad():
        first, second = classifier(images), classifier(images)
    if not torch.allclose(first, second, rtol=1e-4, atol=1e-5):
        messages.append("the model's outputs change between two calls on the same input (randomness, dropout "
                        "or train mode?): attacks may be unreliable; evaluate with the model in eval mode")
    row_sums = first.sum(dim=1)
    if first.min() >= 0 and first.max() <= 1 and torch.allclose(row_sums, torch.ones_like(row_sums), atol=1e-4):
        messages.append("the model's outputs look like probabilities (in [0, 1], rows sum to 1): attacks expect "
                        "logits; remove the final softmax")
    x = images.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        loss = F.cross_entropy(classifier(x), labels)
        (grad,) = torch.autograd.grad(loss, x)
    zero = (grad.flatten(1).abs().amax(1) == 0).float().mean().item()
    if zero > 0:
        messages.append(f"the input gradient is exactly zero for {zero:.0%} of the probed points: "
                        "gradient-based attacks cannot move them (gradient masking?); check with Square")
    for message in messages:
        warnings.warn(message, GradientMaskingWarning, stacklevel=2)
    return messages
