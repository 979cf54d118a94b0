"""The module inside the wrappers training puts around an encoder (DDP, torch.compile), and a context in which
a backward pass computes the input's gradient alone (PGD's)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn


@contextmanager
def input_gradient_only(module: nn.Module) -> Iterator[None]:
    """Inside: `module`'s parameters do not require gradients (restored on exit), so a backward pass computes
    the input's gradient alone: eager autograd skips the weight gradients' matmuls either way, but a compiled
    graph (torch.compile) keeps them unless the parameters are marked like this."""
    trainable = [p for p in module.parameters() if p.requires_grad]
    for parameter in trainable:
        parameter.requires_grad_(False)
    try:
        yield
    finally:
        for parameter in trainable:
            parameter.requires_grad_(True)


def unwrap(module: nn.Module) -> nn.Module:
    """The plain module inside DDP / torch.compile wrappers."""
    while True:
        if isinstance(module, nn.parallel.DistributedDataParallel):
            module = module.module
        elif isinstance(module, torch._dynamo.eval_frame.OptimizedModule):
            module = module._orig_mod
        else:
            return module
