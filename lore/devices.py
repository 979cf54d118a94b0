"""Device names: checked as text where a config is validated (torch-free), resolved against this machine later."""

from __future__ import annotations

import re

DEVICE_PATTERN = re.compile(r"^(|cpu|cuda(:\d+)?|mps|xpu(:\d+)?)$")


def check_device(device: str) -> str:
    """'' (auto), 'cpu', 'cuda', 'cuda:N', 'mps' or 'xpu[:N]'; anything else is refused by name."""
    if not DEVICE_PATTERN.match(device):
        raise ValueError(f"device must be cpu, cuda, cuda:N (or empty for automatic), got {device!r}")
    return device


def resolve_device(name: str):
    """The `torch.device` `name` names ('' = cuda if available, else cpu); refuses one this machine does not have."""
    import torch

    if not name:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} was requested but CUDA is not available on this machine")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"device {name!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return device
