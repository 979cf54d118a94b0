"""The two evaluation passes of a `PrimalDual` step over its micro-batches: the one the primal update
differentiates (with the dual term in the same backward pass on a simultaneous dual step), and, in
mode="alternating", the re-evaluation after the update that the dual step reads."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any, Optional

import torch

from .binding import Binding
from .closures import Closure, Evaluation, evaluate, strict_violations_finite
from .lagrangian import dual_lagrangian, multiplier_values, primal_lagrangian
from .protocols import Formulation

AroundDual = Callable[[], AbstractContextManager[Any]]


def accumulate(closures: Sequence[Closure], bindings: Mapping[str, Binding], formulation: Formulation, weight: float,
               *, scaled: Callable[[torch.Tensor], torch.Tensor], around_dual: Optional[AroundDual],
               check_finite: bool) -> tuple[list[Evaluation], list[dict[str, torch.Tensor]], list[torch.Tensor]]:
    """Evaluates each micro-batch and back-propagates weight x its primal Lagrangian, scaled by `scaled` (the
    GradScaler's, or the identity); with `around_dual` (a dual step this pass), the dual Lagrangian too, in the
    same backward pass and inside that context. The primal term holds lambda fixed, the dual term g.

    Returns:
        The evaluations, the multiplier values and the detached Lagrangians, one of each per micro-batch.

    Raises:
        ValueError: micro-batches with different numbers of rows (their average would not be the batch's update).
    """
    evaluations: list[Evaluation] = []
    values: list[dict[str, torch.Tensor]] = []
    lagrangians: list[torch.Tensor] = []
    for closure in closures:
        evaluation = evaluate(closure, bindings, require_grad=True, check_finite=check_finite)
        if evaluation.rows != (first := (evaluations or [evaluation])[0].rows):
            raise ValueError(f"micro-batches must all have the same number of rows for step_accumulated to "
                             f"equal the full-batch update; got {first} rows, then {evaluation.rows} "
                             f"(closure {len(evaluations)})")
        value = multiplier_values(evaluation.priced, formulation)  # once, for both terms
        lagrangian = primal_lagrangian(evaluation.loss, evaluation.priced, value, formulation)
        roots = [scaled(weight * lagrangian)]
        if around_dual is not None:
            with around_dual():
                dual = dual_lagrangian(evaluation.priced, value, formulation, weight)
            if dual is not None:
                roots.append(dual)
        torch.autograd.backward(roots)
        evaluations.append(evaluation)
        values.append(value)
        lagrangians.append(lagrangian.detach())
    return evaluations, values, lagrangians


def reevaluate_for_dual(closures: Sequence[Closure], bindings: Mapping[str, Binding], formulation: Formulation,
                        weight: float, *, around_dual: AroundDual, ascend: bool, check_finite: bool
                        ) -> tuple[list[Evaluation], list[dict[str, torch.Tensor]]]:
    """mode="alternating": evaluates the updated model (no primal gradient) and, when `ascend` (a dual optimizer
    exists), accumulates the dual Lagrangian's gradient at these fresher violations, inside `around_dual`. The
    caller zeroes the dual gradients first."""
    evaluations, values = [], []
    for closure in closures:
        with torch.no_grad():
            evaluation = evaluate(closure, bindings, check_finite=check_finite)
        with around_dual():
            value = multiplier_values(evaluation.priced, formulation)
            if ascend:
                dual = dual_lagrangian(evaluation.priced, value, formulation, weight)
                if dual is not None:
                    torch.autograd.backward(dual)
        evaluations.append(evaluation)
        values.append(value)
    return evaluations, values


def all_finite(lagrangian: torch.Tensor, gradients: Optional[torch.Tensor], evaluations: Sequence[Evaluation]
               ) -> torch.Tensor:
    """Whether the Lagrangian, the primal gradients (`gradients`: their own flag, or None when not checked) and
    the strict violations of `evaluations` are all finite, as a 0-dim bool tensor (no sync)."""
    flags = [torch.isfinite(lagrangian)]
    if gradients is not None:
        flags.append(gradients)
    flags += [f for e in evaluations if (f := strict_violations_finite(e)) is not None]
    return flags[0] if len(flags) == 1 else torch.stack(flags).all()
