"""Margins m(x): the per-sample tolerance of a constraint d(out, ref) <= m.

A margin is a small frozen value, called on the reference output and
returning shape [B]. It never depends on the model being trained (paper
Eq. 5: m is independent of theta), so its value carries no gradient.

Example:
    >>> import torch
    >>> from constrained import NormMargin
    >>> ref = torch.full((2, 8), 2.0)
    >>> NormMargin(0.1)(ref)          # 0.1 * ||ref||^2 per sample
    tensor([3.2000, 3.2000])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from .validation import check_float_tensor, check_nonnegative_finite

Margin = Callable[[torch.Tensor], torch.Tensor]
"""Type of a margin: ref [B, ...] -> [B], no gradient."""


@dataclass(frozen=True)
class NormMargin:
    """m(ref) = rho * ||ref||_2^2 per sample: the paper's scale-invariant margin (Eq. 7).

    With `sq_l2` this bounds the relative deviation ||out - ref||^2 / ||ref||^2
    by rho, which bounds the change of any cosine similarity by 2 sqrt(rho)
    (paper App. F).

    Args:
        rho: relative tolerance, finite and >= 0 (paper default 0.1).
    """

    rho: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "rho", check_nonnegative_finite(self.rho, "rho"))

    def __call__(self, ref: torch.Tensor) -> torch.Tensor:
        """Returns [B] = rho * ||ref_i||^2 for ref of shape [B, ...]."""
        check_float_tensor(ref, "ref")
        return self.rho * ref.detach().reshape(ref.shape[0], -1).pow(2).sum(dim=1)


@dataclass(frozen=True)
class FixedMargin:
    """m(ref) = value for every sample.

    Args:
        value: the tolerance, finite and >= 0, in the units of the divergence.
    """

    value: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "value", check_nonnegative_finite(self.value, "value"))

    def __call__(self, ref: torch.Tensor) -> torch.Tensor:
        """Returns [B] filled with `value`, on ref's device and dtype."""
        check_float_tensor(ref, "ref")
        return torch.full((ref.shape[0],), self.value, dtype=ref.dtype, device=ref.device)


@dataclass(frozen=True)
class EntropyMargin:
    """m(ref_logits) = rho * H(softmax(ref_logits)) per sample (paper App. J.7, TeCoA+KL).

    Confident reference predictions (low entropy) get a tight tolerance,
    uncertain ones a loose one.

    Args:
        rho: scale, finite and >= 0.
    """

    rho: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "rho", check_nonnegative_finite(self.rho, "rho"))

    def __call__(self, ref: torch.Tensor) -> torch.Tensor:
        """Returns [B] = rho * entropy (nats) for logits of shape [B, C]."""
        check_float_tensor(ref, "ref", min_dim=2)
        if ref.dim() != 2:
            raise ValueError(f"EntropyMargin expects logits of shape [B, C], got {tuple(ref.shape)}")
        logp = F.log_softmax(ref.detach(), dim=1)
        return self.rho * -(logp.exp() * logp).sum(dim=1)
