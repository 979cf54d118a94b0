"""Running a user's closure and checking what it returns, before anything is updated.

A closure evaluates the model on one (micro-)batch and returns ``(loss, observations)``: a scalar objective f
and one `Observation` per bound constraint (or a single `Observation`); or ``(loss, observations, misc)``, where
`misc` is any value of the caller's own (per-sample losses, embeddings to log), handed back untouched in
`StepReport.misc` (as cooper's `CMPState.misc`), so that nothing has to leave the closure through a side channel.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple, Optional, Union

import torch

from .binding import Binding
from .lagrangian import Priced, multiplier_values, price, primal_lagrangian
from .protocols import Formulation, Observation

Observations = Union[Observation, Sequence[Observation]]
Closure = Callable[[], Union[tuple[torch.Tensor, Observations], tuple[torch.Tensor, Observations, Any]]]


class Evaluation(NamedTuple):
    """One run of a closure: its loss, its observations by constraint name, their priced form, and the closure's
    own `misc` value (None when it returned two values)."""

    loss: torch.Tensor
    observations: dict[str, Observation]
    priced: dict[str, Priced]
    misc: Any = None

    @property
    def rows(self) -> Optional[int]:
        """The data rows observed (the first observation's `batch_size`; not a group constraint's entries); None
        for an unconstrained step, which observes nothing."""
        first = next(iter(self.observations.values()), None)
        return None if first is None else first.batch_size


def evaluate(closure: Closure, bindings: Mapping[str, Binding], require_grad: bool = False,
             check_finite: bool = True) -> Evaluation:
    """Runs `closure` and checks its result against `bindings` (every constraint observed once, finite strict
    violations unless `check_finite` is False (the caller then reads `strict_violations_finite` with its own
    numbers), and with `require_grad` violations that carry the model's gradient).

    Raises:
        TypeError / ValueError / FloatingPointError naming the constraint at fault.
    """
    result = closure()
    if not (isinstance(result, tuple) and len(result) in (2, 3)):
        raise TypeError("closure must return (loss, observations) or (loss, observations, misc)")
    loss, observations = result[0], result[1]
    misc = result[2] if len(result) == 3 else None
    if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
        shape = tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
        raise ValueError(f"closure's loss must be a scalar tensor, got {shape}")
    if isinstance(observations, Observation):
        observations = [observations]
    by_name: dict[str, Observation] = {}
    for observation in observations:
        name = _checked(observation, bindings, require_grad, check_finite)
        if name in by_name:
            raise ValueError(f"closure observed constraint {name!r} twice")
        by_name[name] = observation
    if len(by_name) != len(bindings):
        raise ValueError(f"closure did not observe constraint(s) {sorted(set(bindings) - set(by_name))}")
    return Evaluation(loss, by_name, {name: price(bindings[name], obs) for name, obs in by_name.items()}, misc)


def strict_violations_finite(evaluation: Evaluation) -> Optional[torch.Tensor]:
    """Whether every strict (true) violation of `evaluation` is finite, as a 0-dim bool tensor (no sync); None
    when no observation carries one."""
    flags = [torch.isfinite(o.strict_violation).all() for o in evaluation.observations.values()
             if o.strict_violation is not None]
    return torch.stack(flags).all() if flags else None


def _checked(observation: Observation, bindings: Mapping[str, Binding], require_grad: bool,
             check_finite: bool = True) -> str:
    """The observed constraint's name, once the observation is known to be usable."""
    if not isinstance(observation, Observation):
        raise TypeError(f"closure must return Observations, got {type(observation).__name__}")
    name = observation.constraint.name
    binding = bindings.get(name)
    if binding is None or (binding.constraint is not observation.constraint
                           and binding.constraint != observation.constraint):
        raise ValueError(f"closure observed constraint {name!r}, which this PrimalDual does not enforce")
    strict = observation.strict_violation
    if check_finite and strict is not None and not bool(torch.isfinite(strict).all()):
        raise FloatingPointError(f"constraint {name!r}: its strict (true) violation is not finite; stopping "
                                 "before any update (a NaN would silently become a multiplier)")
    if require_grad and torch.is_grad_enabled() and not observation.violation.requires_grad:
        raise ValueError(f"constraint {name!r}: its violation carries no gradient (was it computed from a "
                         "detached output or under torch.no_grad()?); the primal step could not enforce it. A value "
                         "without a gradient (a rate, an indicator) needs a differentiable surrogate: pass it as "
                         "proxy= to the constraint's observe (e.g. GroupConstraint.observe(values, groups, proxy=...))")
    return name


def primal_objective(closures: Sequence[Closure], bindings: Mapping[str, Binding], formulation: Formulation,
                     weight: float) -> float:
    """The primal Lagrangian re-evaluated, multipliers held fixed, its gradient accumulated into the model (the
    objective an L-BFGS step minimises; the caller zeroes the gradients first).

    Args:
        weight: each micro-batch's share (1 / len(closures)).
    """
    total = 0.0
    for closure in closures:
        e = evaluate(closure, bindings, require_grad=True)
        lagrangian = weight * primal_lagrangian(e.loss, e.priced, multiplier_values(e.priced, formulation), formulation)
        torch.autograd.backward(lagrangian)
        total += float(lagrangian)
    return total
