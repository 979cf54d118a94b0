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


def native_bf16(device) -> bool:
    """Whether `device` (a `torch.device`) runs bf16 natively: a CUDA GPU that supports it, or a CPU with
    AVX512-BF16 or AMX. Elsewhere autocast emulates bf16 and is many times slower than fp32."""
    import torch

    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    if device.type == "cpu":
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    return True  # other accelerators: their own business


def bf16_warning(device) -> str | None:
    """The warning `--precision bf16` deserves on `device`, or None when bf16 is native there."""
    if native_bf16(device):
        return None
    return (f"--precision bf16 on this {device.type.upper()} has no native bf16 (no AVX512-BF16/AMX): autocast "
            "emulates it and runs many times slower than fp32 (about 80x measured on a 2-core CPU); use "
            "--precision fp32 here")
