"""Input checks shared by the public functions of `constrained`, public for code that extends it (a new
constraint kind, divergence or multiplier checks its inputs the same way).

Every check raises `TypeError` or `ValueError` naming the offending argument
and its shape, dtype, device or value, so that bad input fails at the public
boundary instead of deep inside autograd.
"""

from __future__ import annotations

import math

import torch


def check_float_tensor(x: object, name: str, *, min_dim: int = 1, allow_empty: bool = False) -> torch.Tensor:
    """Checks that `x` is a floating-point tensor with a non-empty batch dimension (empty allowed on request)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a real floating-point tensor, got dtype {x.dtype}")
    if x.dim() < min_dim:
        raise ValueError(
            f"{name} must have at least {min_dim} dimension(s) [B, ...], got shape {tuple(x.shape)}"
        )
    if x.shape[0] == 0 and not allow_empty:
        raise ValueError(f"{name} is an empty batch (shape {tuple(x.shape)}); need B >= 1")
    return x


def check_pair(out: object, ref: object, *, min_dim: int = 1) -> None:
    """Checks that `out` and `ref` are float tensors of one shape on one device."""
    check_float_tensor(out, "out", min_dim=min_dim)
    check_float_tensor(ref, "ref", min_dim=min_dim)
    assert isinstance(out, torch.Tensor) and isinstance(ref, torch.Tensor)  # for type checkers
    if out.shape != ref.shape:
        raise ValueError(
            f"out and ref must have the same shape, got out {tuple(out.shape)} "
            f"and ref {tuple(ref.shape)}"
        )
    if out.device != ref.device:
        raise ValueError(f"out and ref must be on one device, got out on {out.device} and ref on {ref.device}")


def check_nonnegative_finite(value: object, name: str) -> float:
    """Returns `value` as a float after checking it is a finite number >= 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be finite and >= 0, got {value}")
    return value


def check_positive_int(value: object, name: str) -> int:
    """Returns `value` after checking it is an int >= 1."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return value
