"""The closure `RobustStep` hands `constrained.PrimalDual` for one micro-batch, and how a batch is split into
micro-batches.

A closure returns (mean robust loss, [the constraint's observation], `Measured`): the third value is what the
evaluation measured for the step's log, which `PrimalDual` hands back in `StepReport.misc` from the evaluation
the primal update differentiated (not from the re-evaluations after it).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import NamedTuple, Optional

import torch

from constrained import sq_l2

from .methods import Batch, Method
from .step_result import StepChecks

Embed = Callable[[torch.Tensor], torch.Tensor]  #: images [b, C, H, W] -> embeddings [b, D] float32


class Measured(NamedTuple):
    """What one closure evaluation measured, detached: the per-sample robust loss [b], and the squared distance
    ||phi(x) - phi_0(x)||^2 [b] of the clean embeddings where the closure computed them (constrained methods),
    else None."""

    robust_loss: torch.Tensor
    clean_distance: Optional[torch.Tensor]


def micro_batches(batch: Batch, initial_delta: Optional[torch.Tensor], count: int
                  ) -> list[tuple[Batch, Optional[torch.Tensor]]]:
    """Splits a batch into `count` equal parts, each with its slice of the PGD start (views, not copies: one part
    is the batch itself)."""
    size = batch.images.shape[0]
    if size % count:
        raise ValueError(f"batch size {size} is not divisible by accumulation_steps={count}")
    parts = []
    for first in range(0, size, size // count):
        rows = slice(first, first + size // count)
        part = Batch(batch.images[rows], batch.reference[rows], None if batch.labels is None else batch.labels[rows],
                     batch.head)
        parts.append((part, None if initial_delta is None else initial_delta[rows]))
    return parts


def batch_closure(method: Method, part: Batch, adversarial: torch.Tensor, *, embed: Embed,
                  no_sync: Callable[[], AbstractContextManager], last: bool, sequential: bool, weight: float,
                  flags: StepChecks) -> Callable[[], tuple[torch.Tensor, list, Measured]]:
    """The closure of one micro-batch.

    Args:
        method: what is minimised (its robust loss) and bounded (its constraint, if any).
        part: the micro-batch; adversarial: its attacked images x + delta, [b, C, H, W].
        embed: the encoder as trained (under DDP, the wrapped one).
        no_sync: DDP's no_sync (gradients accumulate locally; a null context outside DDP). Every micro-batch
            but the `last` runs its forward in it, so its backward does not all-reduce.
        sequential: a constrained method's two passes one after the other (the adversarial term back-propagated
            before the clean forward) instead of one concatenated forward.
        weight: the micro-batch's share of the batch (1 / micro-batches), for `sequential`'s early backward.
        flags: where `sequential`'s finiteness check of the robust loss goes.
    """
    constrained = method.constraint is not None

    def evaluate() -> tuple[torch.Tensor, list, Measured]:
        if constrained and not sequential:
            adv_emb, clean_emb = embed(torch.cat([adversarial, part.images])).chunk(2)
            robust = method.robust_loss(adv_emb, part)
        elif sequential:
            robust = backward_now(lambda: method.robust_loss(embed(adversarial), part), weight, flags, method.name,
                                  no_sync)
            clean_emb = embed(part.images)  # the robust term is already back-propagated: a value only
        else:
            robust = method.robust_loss(embed(adversarial), part)
            return robust.mean(), [], Measured(robust.detach(), None)
        measured = Measured(robust.detach(), sq_l2(clean_emb.detach(), part.reference))
        observation = method.constraint.observe(method.view(clean_emb, part), method.view(part.reference, part),
                                                features=part.reference)
        return robust.mean(), [observation], measured

    def closure() -> tuple[torch.Tensor, list, Measured]:
        with no_sync() if not last else nullcontext():
            return evaluate()

    return closure


def backward_now(robust_loss: Callable[[], torch.Tensor], weight: float, flags: StepChecks, name: str,
                 no_sync: Callable[[], AbstractContextManager] = nullcontext) -> torch.Tensor:
    """Forward and back-propagate `weight * mean(robust loss)` at once, freeing its activations; returns the
    per-sample losses, detached. Under DDP (`no_sync`: its no_sync) the gradients are synchronised by the later
    clean backward."""
    grad = torch.is_grad_enabled()
    with no_sync():
        robust = robust_loss()
        flags.finite(torch.isfinite(robust.detach()).all(), f"{name} robust loss is not finite")
        if grad and robust.requires_grad:
            (weight * robust.mean()).backward()
    return robust.detach()
