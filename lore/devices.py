"""Device names: checked as text where a config is validated (torch-free), resolved against this machine later."""

from __future__ import annotations

import re
from typing import Optional

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


def torch_pair_problem() -> Optional[str]:
    """One line saying why this torch and torchvision cannot work together, or None when they can.

    torchvision 0.(m+15) is built for torch 2.m, and a CPU build (`+cpu`) or a CUDA build (`+cu130`) of one needs
    the same build of the other: a mismatched pair imports, then fails at the first torchvision operator
    (`operator torchvision::nms does not exist`). Checked when a `lore` command or the main job starts.
    """
    import torch
    import torchvision

    torch_version, vision_version = torch.__version__, torchvision.__version__
    fix = ("reinstall them as a pair, e.g. pip install --force-reinstall 'torch==2.14.*' 'torchvision==0.29.*' "
           "(with --index-url https://download.pytorch.org/whl/cpu on a machine without a GPU)")
    try:
        torch_minor = int(torch_version.split("+")[0].split(".")[1])
        vision_minor = int(vision_version.split("+")[0].split(".")[1])
    except (IndexError, ValueError):
        return None  # a development build: nothing to compare
    builds = (torch_version.partition("+")[2], vision_version.partition("+")[2])
    if torch_version.startswith("2.") and vision_minor != torch_minor + 15:
        return (f"torch {torch_version} and torchvision {vision_version} are not a pair (torchvision 0.{torch_minor + 15} "
                f"goes with torch 2.{torch_minor}): {fix}")
    if all(builds) and builds[0] != builds[1]:
        return f"torch {torch_version} and torchvision {vision_version} are different builds: {fix}"
    if not hasattr(torch.ops.torchvision, "nms"):
        return (f"torchvision {vision_version}'s operators did not load with torch {torch_version} (a build for another "
                f"torch): {fix}")
    return None
