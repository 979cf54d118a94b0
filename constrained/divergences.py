"""Divergences d(out, ref): pure functions returning one value per sample.

Every divergence takes two tensors of shape [B, ...] (the first dimension is
the batch; the others are flattened, except for the distributional
divergences, which read the last dimension as class logits) and returns a
tensor of shape [B]. There is no reduction argument: the caller reduces.
All are >= 0 and zero when `out == ref`.

Example:
    >>> import torch
    >>> from constrained import sq_l2
    >>> out, ref = torch.randn(4, 8), torch.randn(4, 8)
    >>> sq_l2(out, ref).shape
    torch.Size([4])
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

from .validation import check_pair

Divergence = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""Type of a divergence: (out [B, ...], ref [B, ...]) -> [B]."""


def _flat_difference(out: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    check_pair(out, ref)
    return (out - ref).reshape(out.shape[0], -1)


def sq_l2(out: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distance ||out - ref||_2^2 per sample (paper Eq. 7).

    Args:
        out: [B, ...] float tensor.
        ref: [B, ...] float tensor of the same shape.

    Returns:
        [B] tensor, in the squared units of the inputs.
    """
    return _flat_difference(out, ref).pow(2).sum(dim=1)


def l2(out: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Euclidean distance ||out - ref||_2 per sample; its gradient at 0 is 0.

    Args:
        out: [B, ...] float tensor.
        ref: [B, ...] float tensor of the same shape.

    Returns:
        [B] tensor, in the units of the inputs.
    """
    distance: torch.Tensor = torch.linalg.vector_norm(_flat_difference(out, ref), ord=2, dim=1)
    return distance


def l1(out: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Manhattan distance ||out - ref||_1 per sample.

    Args:
        out: [B, ...] float tensor.
        ref: [B, ...] float tensor of the same shape.

    Returns:
        [B] tensor.
    """
    return _flat_difference(out, ref).abs().sum(dim=1)


def cosine_distance(out: torch.Tensor, ref: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """1 - cos(out, ref) per sample, in [0, 2].

    Args:
        out: [B, ...] float tensor (flattened per sample).
        ref: [B, ...] float tensor of the same shape.
        eps: guards the norms against zero.

    Returns:
        [B] tensor in [0, 2]; 0 when out is a positive multiple of ref.
    """
    check_pair(out, ref)
    cos = F.cosine_similarity(out.reshape(out.shape[0], -1), ref.reshape(ref.shape[0], -1), dim=1, eps=eps)
    return (1.0 - cos).clamp_min(0.0)


def _check_logits(out: torch.Tensor, ref: torch.Tensor) -> None:
    check_pair(out, ref, min_dim=2)
    if out.dim() != 2:
        raise ValueError(f"logits must have shape [B, C], got out {tuple(out.shape)}")


def kl_div(out: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """KL(softmax(ref) || softmax(out)) per sample, from logits (paper App. J.7).

    The reference distribution comes first, as in TeCoA+KL's constraint
    KL(p_0 || p_theta) <= m(x).

    Args:
        out: [B, C] logits of the model being trained.
        ref: [B, C] logits of the reference model.

    Returns:
        [B] tensor in nats.
    """
    _check_logits(out, ref)
    ref_logp = F.log_softmax(ref, dim=1)
    out_logp = F.log_softmax(out, dim=1)
    return (ref_logp.exp() * (ref_logp - out_logp)).sum(dim=1).clamp_min(0.0)


def js_div(out: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Jensen-Shannon divergence between softmax(out) and softmax(ref), from logits.

    Symmetric and bounded by log(2).

    Args:
        out: [B, C] logits.
        ref: [B, C] logits.

    Returns:
        [B] tensor in nats, in [0, log 2].
    """
    _check_logits(out, ref)
    p_logp = F.log_softmax(out, dim=1)
    q_logp = F.log_softmax(ref, dim=1)
    mix_logp = torch.logaddexp(p_logp, q_logp) - math.log(2.0)
    kl_p = (p_logp.exp() * (p_logp - mix_logp)).sum(dim=1)
    kl_q = (q_logp.exp() * (q_logp - mix_logp)).sum(dim=1)
    return (0.5 * (kl_p + kl_q)).clamp_min(0.0)
