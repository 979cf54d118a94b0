"""Tensor conversions that dispatch no op when there is nothing to convert (they run on every step)."""

from __future__ import annotations

from typing import Optional

import torch


def detached(tensor: torch.Tensor) -> torch.Tensor:
    """`tensor` without its autograd history; the tensor itself when it has none."""
    return tensor.detach() if tensor.requires_grad else tensor


def converted(tensor: torch.Tensor, dtype: torch.dtype, device: Optional[torch.device] = None) -> torch.Tensor:
    """`tensor` as `dtype` (on `device`, if given); the tensor itself when it already is."""
    device = tensor.device if device is None else device
    if tensor.dtype != dtype or tensor.device != device:
        return tensor.to(device=device, dtype=dtype)
    return tensor
