"""Common corruptions at severities 1-5 and Gaussian noise, on images in [0, 1].

Parameters follow the spirit of Hendrycks & Dietterich's ImageNet-C
(noise std, blur radius, JPEG quality, brightness shift, contrast factor per
severity); every function maps [B, C, H, W] in [0, 1] to the same shape and range.
"""

from __future__ import annotations

import io
from typing import Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F

from ..vocabulary import Corruption, choices

GAUSSIAN_NOISE = (0.04, 0.06, 0.08, 0.09, 0.10)
BLUR_SIGMA = (0.5, 0.75, 1.0, 1.5, 2.0)
JPEG_QUALITY = (80, 65, 58, 50, 40)
BRIGHTNESS = (0.1, 0.2, 0.3, 0.4, 0.5)
CONTRAST = (0.4, 0.3, 0.2, 0.1, 0.05)


def _check(severity: int) -> int:
    if severity not in (1, 2, 3, 4, 5):
        raise ValueError(f"severity must be 1..5, got {severity}")
    return severity - 1


def gaussian_noise(images: torch.Tensor, sigma: float, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """x + N(0, sigma^2), clipped to [0, 1]."""
    noise = torch.randn(images.shape, generator=generator, device=generator.device if generator else images.device)
    return (images + sigma * noise.to(images)).clamp(0, 1)


def noise(images, severity: int, generator=None):
    return gaussian_noise(images, GAUSSIAN_NOISE[_check(severity)], generator)


def blur(images, severity: int, generator=None):
    """Gaussian blur (separable kernel, reflect padding)."""
    sigma = BLUR_SIGMA[_check(severity)]
    radius = max(1, int(round(3 * sigma)))
    grid = torch.arange(-radius, radius + 1, dtype=images.dtype, device=images.device)
    kernel = torch.exp(-(grid**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    channels = images.shape[1]
    pad = min(radius, images.shape[-1] - 1, images.shape[-2] - 1)
    x = F.pad(images, (pad, pad, pad, pad), mode="reflect") if pad > 0 else images
    if pad < radius:  # tiny images: trim the kernel to what the padding allows
        kernel = kernel[radius - pad: radius + pad + 1]
        kernel = kernel / kernel.sum()
    horizontal = kernel.view(1, 1, 1, -1).expand(channels, 1, 1, -1)
    vertical = kernel.view(1, 1, -1, 1).expand(channels, 1, -1, 1)
    x = F.conv2d(x, horizontal, groups=channels)
    x = F.conv2d(x, vertical, groups=channels)
    return x.clamp(0, 1)


def jpeg(images, severity: int, generator=None):
    """JPEG re-encoding at decreasing quality (through Pillow)."""
    from PIL import Image

    quality = JPEG_QUALITY[_check(severity)]
    out = []
    for image in images.detach().cpu():
        array = (image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(array.squeeze(-1) if array.shape[-1] == 1 else array).save(buffer, format="JPEG", quality=quality)
        decoded = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB" if array.shape[-1] == 3 else "L"))
        tensor = torch.from_numpy(decoded.copy()).float() / 255
        out.append(tensor.permute(2, 0, 1) if tensor.dim() == 3 else tensor[None])
    return torch.stack(out).to(images)


def brightness(images, severity: int, generator=None):
    """Adds a constant to every pixel."""
    return (images + BRIGHTNESS[_check(severity)]).clamp(0, 1)


def contrast(images, severity: int, generator=None):
    """Pulls pixels towards each image's mean: (x - mean) * c + mean."""
    mean = images.mean(dim=(1, 2, 3), keepdim=True)
    return ((images - mean) * CONTRAST[_check(severity)] + mean).clamp(0, 1)


#: every corruption of `lore.vocabulary.Corruption`, in its order: each name is the name of its function here
CORRUPTIONS: dict[str, Callable] = {name: globals()[name] for name in choices(Corruption)}
