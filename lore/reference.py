"""The frozen reference encoder phi_0 (the anchor of FARE and LORE).

`FrozenReference` evaluates the *same* module over a detached snapshot of its
starting parameters and buffers with `torch.func.functional_call`: no second
module is built, no gradient flows, the optimiser never sees the snapshot,
and the evaluation always runs in eval mode (the live module's train/eval
flag is restored afterwards). An optional cache keyed by dataset index skips
the reference forward entirely for data that does not change.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn
from torch.func import functional_call


class FrozenReference(nn.Module):
    """phi_0(x): a frozen snapshot of `encoder` taken at construction.

    Args:
        encoder: the module that will be trained; its current weights are the reference.
        cache_size: if given, embeddings of dataset indices in [0, cache_size)
            are stored after their first computation (on CPU) and reused.

    Example:
        >>> import torch
        >>> from lore import FrozenReference
        >>> encoder = torch.nn.Linear(8, 4)
        >>> reference = FrozenReference(encoder)
        >>> with torch.no_grad():
        ...     _ = encoder.weight.add_(1.0)       # training moves the encoder ...
        >>> x = torch.randn(2, 8)
        >>> ref = reference(x)                     # ... but phi_0 keeps the weights of construction
        >>> ref.shape, ref.requires_grad, torch.equal(ref, encoder(x))
        (torch.Size([2, 4]), False, False)
    """

    def __init__(self, encoder: nn.Module, cache_size: Optional[int] = None) -> None:
        super().__init__()
        self._encoder = [encoder]  # a list, so the live module is not registered as a submodule
        self._snapshot = {
            name: tensor.detach().clone() for name, tensor in _named_tensors(encoder).items()
        }
        self.cache_size = cache_size
        self._cache: Optional[torch.Tensor] = None
        self._cached = None
        if cache_size is not None and cache_size < 1:
            raise ValueError(f"cache_size must be >= 1 or None, got {cache_size}")

    @property
    def encoder(self) -> nn.Module:
        return self._encoder[0]

    @torch.no_grad()
    def forward(self, images: torch.Tensor, indices: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Embeds images with the frozen weights.

        Args:
            images: [B, C, H, W] in [0, 1].
            indices: optional [B] int64 dataset indices, used with the cache.

        Returns:
            [B, D] embeddings, detached.
        """
        if indices is None or self.cache_size is None:
            return self._embed(images)
        if indices.shape != (images.shape[0],):
            raise ValueError(f"indices must have shape [B]=[{images.shape[0]}], got {tuple(indices.shape)}")
        if int(indices.min()) < 0 or int(indices.max()) >= self.cache_size:
            raise ValueError(f"indices must lie in [0, {self.cache_size}), got range [{int(indices.min())}, {int(indices.max())}]")
        cpu_indices = indices.cpu()
        if self._cache is None:
            self._cache = torch.empty(0)
            self._cached = torch.zeros(self.cache_size, dtype=torch.bool)
        missing = ~self._cached[cpu_indices]
        if missing.any():
            fresh = self._embed(images[missing.to(images.device)])
            if self._cache.numel() == 0:
                self._cache = torch.zeros(self.cache_size, *fresh.shape[1:], dtype=fresh.dtype)
            self._cache[cpu_indices[missing]] = fresh.cpu()
            self._cached[cpu_indices[missing]] = True
        return self._cache[cpu_indices].to(images.device)

    def _embed(self, images: torch.Tensor) -> torch.Tensor:
        encoder = self.encoder
        if next(iter(self._snapshot.values())).device != images.device:  # follow the data once
            self._snapshot = {k: v.to(images.device) for k, v in self._snapshot.items()}
        snapshot = self._snapshot
        was_training = encoder.training
        encoder.eval()
        try:
            return functional_call(encoder, snapshot, (images,), strict=False).detach()
        finally:
            encoder.train(was_training)


def _named_tensors(module: nn.Module) -> dict[str, torch.Tensor]:
    tensors = dict(module.named_parameters(remove_duplicate=False))
    tensors.update(dict(module.named_buffers(remove_duplicate=False)))
    return tensors
