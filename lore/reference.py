"""The frozen reference encoder phi_0 (the anchor of FARE and LORE).

`FrozenReference` evaluates the *same* module over a detached snapshot of its
starting parameters and buffers with `torch.func.functional_call`: no second
module is built, no gradient flows, the optimiser never sees the snapshot,
and the evaluation always runs in eval mode (the live module's train/eval
flag is restored afterwards).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call


class FrozenReference(nn.Module):
    """phi_0(x): a frozen snapshot of `encoder` taken at construction.

    Args:
        encoder: the module that will be trained; its current weights are the reference.

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

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self._encoder = [encoder]  # a list, so the live module is not registered as a submodule
        self._snapshot = {
            name: tensor.detach().clone() for name, tensor in _named_tensors(encoder).items()
        }

    @property
    def encoder(self) -> nn.Module:
        return self._encoder[0]

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Embeds images with the frozen weights.

        Args:
            images: [B, C, H, W] in [0, 1].

        Returns:
            [B, D] embeddings, detached.
        """
        return self._embed(images)

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
