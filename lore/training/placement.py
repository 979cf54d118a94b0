"""Putting an encoder on its device for training: which device, memory format, TF32, activation checkpointing,
the parameters no image reaches, DDP's buffer policy, and the worker and pass counts 'auto' resolves to."""

from __future__ import annotations

import inspect
import os

import torch

from ..devices import resolve_device
from ..models.build import BuiltModel
from .distributed import DistInfo


def training_device(requested: str, info: DistInfo) -> torch.device:
    """The training device; a bare --device cuda means this rank's GPU (DDP's device_ids need the index)."""
    if requested and requested != "cuda":
        return resolve_device(requested)
    if requested == "cuda" or torch.cuda.is_available():
        resolve_device("cuda")  # refuses a machine without CUDA by name
        return torch.device(f"cuda:{info.local_rank}")
    return torch.device("cpu")


def resolve_workers(workers: int) -> int:
    """Data-loading processes: `workers`, or for -1 min(8, the CPU cores this process may use)."""
    if workers >= 0:
        return workers
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return min(8, cores)


def resolve_passes(passes: str, device: torch.device) -> str:
    """'auto' -> 'sequential' on GPUs (memory decides the batch there), 'fused' elsewhere (fastest on a CPU)."""
    if passes != "auto":
        return passes
    return "sequential" if device.type == "cuda" else "fused"


def enable_grad_checkpointing(encoder: torch.nn.Module, model_name: str) -> None:
    """Turns on activation checkpointing in an open_clip or timm tower; refuses towers that have none."""
    backbone = getattr(encoder, "backbone", encoder)
    switch = getattr(backbone, "set_grad_checkpointing", None)
    if switch is None:
        raise ValueError(f"grad_checkpointing: model {model_name!r} ({type(backbone).__name__}) has no activation "
                         "checkpointing; it is available for open_clip and timm towers")
    switch(True)


def freeze_unreachable(encoder: torch.nn.Module, image_size: int, device: torch.device) -> list[str]:
    """Stops training the parameters the image embedding never uses, and returns their names.

    A tower may carry parameters its image forward pass does not reach (Hugging Face `Dinov2Model`'s
    `embeddings.mask_token`, used only for masked-image pretraining). No gradient ever reaches them, which DDP
    (with `find_unused_parameters=False`, its fast setting) takes for a rank that fell out of step and stops
    on. One forward and backward pass of two blank images in eval mode finds them; they are set not to
    require gradients, so neither the optimizer nor DDP sees them, and they keep their values in every export.

    Args:
        encoder: the image encoder, images [B, 3, S, S] in [0, 1] -> [B, D].
        image_size: S.
        device: where the encoder lives.
    """
    trainable = [(name, p) for name, p in encoder.named_parameters() if p.requires_grad]
    was_training = encoder.training
    encoder.eval()
    try:
        blank = torch.zeros(2, 3, image_size, image_size, device=device, requires_grad=False)
        reached = torch.autograd.grad(encoder(blank).float().sum(), [p for _, p in trainable], allow_unused=True)
    finally:
        encoder.train(was_training)
    unreachable = []
    for (name, parameter), grad in zip(trainable, reached):
        if grad is None:
            parameter.requires_grad_(False)
            unreachable.append(name)
    return unreachable


def has_running_statistics(module: torch.nn.Module) -> bool:
    """Whether training changes some buffer of `module` (batch norm's running statistics), which DDP must then
    broadcast from rank 0 at every forward."""
    return any(isinstance(m, torch.nn.modules.batchnorm._NormBase) and m.track_running_stats for m in module.modules())


def prepare_for_device(built: BuiltModel, device: torch.device, info: DistInfo, *, channels_last: bool,
                       tf32: bool) -> None:
    """Before phi_0's snapshot and DDP: the memory format, TF32, and the parameters no image reaches frozen."""
    if channels_last:  # before phi_0's snapshot, so the reference runs in the same layout
        built.encoder.to(memory_format=torch.channels_last)
    if device.type == "cuda":  # fp32 matmuls (phi_0 outside autocast's ops, the dual, fp32 runs) on tensor cores
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
    frozen = freeze_unreachable(built.encoder, built.image_size, device)
    if frozen and info.is_main:
        print(f"frozen: {len(frozen)} parameter(s) the image embedding never uses ({', '.join(frozen[:4])}"
              f"{', ...' if len(frozen) > 4 else ''}): not trained, not synchronised", flush=True)


def wrap_for_training(encoder: torch.nn.Module, device: torch.device, info: DistInfo, *, compile: bool) -> torch.nn.Module:
    """The encoder as the step calls it: compiled with --compile, in DDP under torchrun. Buffers are broadcast on
    every forward only where training changes some (BatchNorm)."""
    model = torch.compile(encoder) if compile else encoder
    if info.enabled:
        ddp = torch.nn.parallel.DistributedDataParallel
        sync = "forward_sync_buffers" if "forward_sync_buffers" in inspect.signature(ddp).parameters else "broadcast_buffers"
        model = ddp(model, device_ids=[device.index] if device.type == "cuda" else None,
                    **{sync: has_running_statistics(encoder)})
    return model
