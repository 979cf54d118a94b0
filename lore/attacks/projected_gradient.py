"""l_inf PGD for adversarial training; the objective is an argument.

Units: images and eps are in the [0, 1] pixel range (eps=4/255).
"""

from __future__ import annotations

from typing import Callable, Optional

import torch

from constrained.validation import check_nonnegative_finite

Objective = Callable[[torch.Tensor], torch.Tensor]
"""Per-sample objective to maximise: perturbed images [B, C, H, W] -> [B]."""


def pgd(
    objective: Objective,
    images: torch.Tensor,
    *,
    eps: float,
    step_size: Optional[float] = None,
    steps: int = 10,
    random_start: bool = True,
    generator: Optional[torch.Generator] = None,
    initial_delta: Optional[torch.Tensor] = None,
    check_range: bool = True,
) -> torch.Tensor:
    """Projected gradient ascent in the l_inf ball: returns delta maximising `objective(images + delta)`.

    Each sample climbs its own objective (the sum over the batch is
    differentiated, and samples do not interact). Only the input gradient is
    computed: model parameters, their `.grad` and the train/eval mode are
    left untouched.

    Args:
        objective: images [B, C, H, W] -> per-sample loss [B] (FARE: embedding distance
            to phi_0(x); TeCoA: cross-entropy over class text embeddings).
        images: clean images [B, C, H, W] in [0, 1].
        eps: radius of the l_inf ball, in pixel units (4/255).
        step_size: ascent step (default eps / 4, the paper's).
        steps: number of ascent steps (paper: 10).
        random_start: start from a uniform point of the ball.
        generator: makes the random start reproducible (same generator state -> same delta).
        initial_delta: an explicit start [B, C, H, W] (projected onto the ball), replacing
            the random start; lets data-parallel ranks slice one global random start.
        check_range: refuse images outside [0, 1] (two host reads; a caller that checks its batch once,
            such as `RobustStep`, turns it off).

    Returns:
        delta [B, C, H, W], detached, with |delta| <= eps and images + delta in [0, 1].
    """
    eps = check_nonnegative_finite(eps, "eps")
    step_size = eps / 4 if step_size is None else check_nonnegative_finite(step_size, "step_size")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be an int >= 0, got {steps!r}")
    if not isinstance(images, torch.Tensor) or not images.is_floating_point() or images.dim() != 4:
        raise ValueError(f"images must be a float tensor [B, C, H, W], got {getattr(images, 'shape', type(images))}")
    images = images.detach()
    if check_range:
        check_pixel_range(images, "images")
    delta = _project(_start(images, eps, random_start, generator, initial_delta), images, eps)
    for _ in range(steps):
        delta.requires_grad_(True)
        with torch.enable_grad():
            values = objective(images + delta)
            if values.shape != (images.shape[0],):
                raise ValueError(f"objective must return shape [B]=[{images.shape[0]}], got {tuple(values.shape)}")
            (grad,) = torch.autograd.grad(values.sum(), delta)
        delta = _project(delta.detach() + step_size * grad.sign(), images, eps)
    return delta.detach()


def _start(images: torch.Tensor, eps: float, random_start: bool, generator: Optional[torch.Generator],
           initial_delta: Optional[torch.Tensor]) -> torch.Tensor:
    """PGD's starting delta, before projection: `initial_delta`, a uniform draw in the ball, or zero."""
    if initial_delta is not None:
        if initial_delta.shape != images.shape:
            raise ValueError(f"initial_delta must have shape {tuple(images.shape)}, got {tuple(initial_delta.shape)}")
        return initial_delta.detach().to(images.device, images.dtype)
    if random_start and eps > 0:
        noise = torch.rand(images.shape, generator=generator, device=generator.device if generator else images.device)
        return (2 * noise.to(images.device, images.dtype) - 1) * eps
    return torch.zeros_like(images)


def check_pixel_range(images: torch.Tensor, name: str = "images", tolerance: float = 1e-4) -> None:
    """Raises ValueError unless `images` lie in the [0, 1] pixel range (eps is a fraction of that range).

    Images in [0, 255] or normalised to [-1, 1] would make eps = 4/255 meaningless and the clamp to
    [0, 1] would move pixels by up to 254, so they are refused with the range found.
    """
    if images.numel() == 0:
        return
    low, high = float(images.min()), float(images.max())
    if not (low >= -tolerance and high <= 1 + tolerance):
        hint = " (divide by 255)" if high > 1.5 else " (undo the normalisation; lore normalises inside the encoder)"
        raise ValueError(f"{name} must be pixels in [0, 1], got values in [{low:.4g}, {high:.4g}]{hint}")


def _project(delta: torch.Tensor, images: torch.Tensor, eps: float) -> torch.Tensor:
    """Clips delta to the eps-ball and images + delta to [0, 1]."""
    delta = delta.clamp(-eps, eps)
    return (images + delta).clamp(0.0, 1.0) - images
