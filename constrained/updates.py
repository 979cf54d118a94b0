"""The stepper's collaborators that touch optimizers: the primal update (plain, through a `GradScaler`, or
re-evaluating for L-BFGS), the dual optimizer, and the dual gradients' all-reduce under torch.distributed."""

from __future__ import annotations

from collections.abc import Callable
from typing import Optional, cast

import torch
from torch import nn

from .protocols import MultiplierKind
from .validation import check_nonnegative_finite

DualOptimizerFactory = Callable[[list[nn.Parameter]], torch.optim.Optimizer]
PAPER_DUAL_LR = 5e-4  #: the default dual ascent rate (paper App. C)


class PrimalUpdate:
    """Steps the primal optimizer once its gradients are accumulated.

    Args:
        optimizer: the model's optimizer. `torch.optim.LBFGS` re-evaluates its objective: `step` is then given
            a closure of the primal Lagrangian.
        scaler: a `torch.amp.GradScaler` (fp16), or None.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, scaler: Optional[torch.amp.GradScaler]) -> None:
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"primal_optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
        if scaler is not None and not isinstance(scaler, torch.amp.GradScaler):
            raise TypeError(f"scaler must be a torch.amp.GradScaler, got {type(scaler).__name__}")
        self.optimizer = optimizer
        self.scaler = scaler
        #: the optimizer re-evaluates its objective through a closure (L-BFGS)
        self.reevaluates = isinstance(optimizer, torch.optim.LBFGS)
        if self.reevaluates and scaler is not None:
            raise ValueError("a GradScaler cannot drive torch.optim.LBFGS (it re-evaluates the loss inside its step); "
                             "use bf16 or fp32 with LBFGS")

    def scaled(self, lagrangian: torch.Tensor) -> torch.Tensor:
        """What to back-propagate: the Lagrangian, times the scaler's scale when there is one."""
        return lagrangian if self.scaler is None else self.scaler.scale(lagrangian)

    def step(self, reevaluate: Callable[[], float]) -> bool:
        """Applies the update; True when the scaler skipped it because the scaled gradients were not finite (it
        then lowers its scale). The caller has checked the gradients (`gradients_finite`), or defers that check.

        Args:
            reevaluate: () -> the primal Lagrangian, accumulating its gradients (called by L-BFGS only, after this
                zeroes the gradients).
        """
        if self.reevaluates:
            def objective() -> float:
                self.optimizer.zero_grad(set_to_none=True)
                return reevaluate()

            self.optimizer.step(objective)
            return False
        if self.scaler is None:
            self.optimizer.step()
            return False
        scale = self.scaler.get_scale()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return self.scaler.get_scale() < scale

    def gradients_finite(self) -> Optional[torch.Tensor]:
        """Whether every accumulated primal gradient is finite, as a 0-dim bool tensor on their device (no sync);
        None where there is nothing to check: no gradient yet, L-BFGS (its step makes its own), or a GradScaler
        (which skips a step whose gradients overflowed)."""
        if self.reevaluates or self.scaler is not None:
            return None
        grads = [p.grad for group in self.optimizer.param_groups for p in group["params"] if p.grad is not None]
        grads = [g.coalesce().values() if g.is_sparse else g for g in grads]
        if not grads:
            return None
        return torch.stack(torch._foreach_norm(grads)).isfinite().all()


def build_dual_optimizer(params: list[nn.Parameter], factory: Optional[DualOptimizerFactory], lr: Optional[float],
                         formulation_name: str) -> Optional[torch.optim.Optimizer]:
    """The multipliers' optimizer: `factory(params)`, or plain dual ascent SGD(lr, maximize=True); None
    without dual variables.

    Raises:
        ValueError: a factory without dual variables, or an optimizer that does not ascend (maximize=False).
    """
    if not params:
        if factory is not None:
            raise ValueError(f"{formulation_name} has no dual variables; drop dual_optimizer")
        return None
    optimizer: torch.optim.Optimizer
    if factory is None:  # multi-tensor: one kernel launch per dual step instead of one per parameter
        assert lr is not None
        optimizer = torch.optim.SGD(params, lr=lr, maximize=True, foreach=True)
    else:
        optimizer = factory(params)
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"dual_optimizer must return a torch.optim.Optimizer, got {type(optimizer).__name__}")
    for group in optimizer.param_groups:
        if not group.get("maximize", False):
            raise ValueError("the dual optimizer must ascend: build it with maximize=True")
    return optimizer


class DualUpdate:
    """Steps the multipliers once their gradients are accumulated: the all-reduce under torch.distributed, the
    dual optimizer, then each multiplier's `project_`.

    Args:
        multipliers: {constraint name: multiplier} (an `nn.ModuleDict` of `MultiplierKind`s).
        per_index: {constraint name: the multiplier's `per_index`}.
        factory: params -> the dual optimizer (it must maximise), or None for plain ascent SGD(lr).
        lr: plain ascent's rate (None: the paper's 5e-4); refused with `factory`, which carries its own.
        formulation_name: for messages.
    """

    def __init__(self, multipliers: nn.ModuleDict, per_index: dict[str, bool], factory: Optional[DualOptimizerFactory],
                 lr: Optional[float], formulation_name: str) -> None:
        if factory is not None and lr is not None:
            raise ValueError(f"dual_lr={lr!r} sets the default dual optimizer's rate, but dual_optimizer= is given: "
                             "give the rate to that optimizer")
        if factory is None:
            lr = check_nonnegative_finite(PAPER_DUAL_LR if lr is None else lr, "dual_lr")
        self.optimizer = build_dual_optimizer(list(multipliers.parameters()), factory, lr, formulation_name)
        self.multipliers = multipliers
        self.per_index = per_index

    def zero_grad(self) -> None:
        if self.optimizer is not None:
            self.optimizer.zero_grad(set_to_none=True)

    def step(self) -> None:
        """One dual ascent step (nothing without dual variables)."""
        if self.optimizer is None:
            return
        all_reduce_dual_gradients(self.multipliers, self.per_index)
        self.optimizer.step()
        for multiplier in self.multipliers.values():
            cast(MultiplierKind, multiplier).project_()


def all_reduce_dual_gradients(multipliers: nn.ModuleDict, per_index: dict[str, bool]) -> None:
    """Under torch.distributed, makes every rank take the same dual step: shared-parameter multipliers average
    their gradients (each rank saw an equal shard of the batch); per-index multipliers sum theirs (each index
    lives on one rank). A no-op in one process.

    Args:
        multipliers: {constraint name: multiplier}.
        per_index: {constraint name: the multiplier's `per_index`}.
    """
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return
    world = torch.distributed.get_world_size()
    if world == 1:
        return
    for name, multiplier in multipliers.items():
        for param in multiplier.parameters():
            if param.grad is None:
                param.grad = torch.zeros_like(param)
            grad = param.grad.to_dense() if param.grad.is_sparse else param.grad
            torch.distributed.all_reduce(grad)
            if not per_index[name]:
                grad /= world
            param.grad = grad
