"""Resilient constraints: each constraint relaxes itself by u >= 0 at a price h(u) it states once.

Resilient constrained learning (Hounie, Ribeiro and Chamon, "Resilient Constrained Learning", NeurIPS 2023)
solves

    minimise_{theta, u >= 0}  f(theta) + sum_i h(u_i)   subject to   g_i(theta) <= u_i

for violations g (`d - m` of a per-sample constraint, a group's mean minus its bound, ...). Its Lagrangian is
f + h(u) + lambda (g - u); for fixed lambda the best relaxation is the u that minimises h(u) - lambda u, i.e.
h'(u*) = lambda, so a constraint is relaxed where, and as far as, holding it costs the objective more than the
price h says relaxing costs. Eliminating u leaves the dual term

    lambda g - h*(lambda),   h*(lambda) = sup_{u >= 0} lambda u - h(u)   (the convex conjugate),

whose gradient in lambda is g - u*(lambda) (Danskin). The primal step is untouched (it sees lambda grad g).
`constrained.lagrangian.dual_lagrangian` adds `relaxation_term` to a constraint's dual term: h(u*) - lambda u*,
with u* computed from lambda and held fixed, which has exactly that value and gradient.

Costs (any `RelaxationCost`):

- `Quadratic(alpha)`: h(u) = alpha u^2 / 2, u* = lambda / alpha. The dual step becomes leaky dual ascent,
  lambda <- [lambda + eta (g - lambda / alpha)]_+: lambda settles where the violation equals lambda / alpha.
- `Linear(beta)`: h(u) = beta u, the l1 relaxation: lambda never needs to exceed its price beta (an exact
  penalty). Its conjugate is 0 on [0, beta] and infinite above, so lambda is capped at beta: the value both terms
  read is min(lambda, beta) (`price`), with lambda's own gradient passed through so that it can come back down,
  and at the cap u* = max(g, 0), the smallest relaxation that makes the constraint hold.

A relaxation holds no state of its own: u is a function of lambda (and, for `Linear` at its cap, of g), so the
multiplier's state is the whole dual state, and checkpoints, DDP (lambda's gradients are all-reduced) and
Lightning carry it unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class RelaxationCost(Protocol):
    """The price h(u) of relaxing a constraint by u >= 0 (elementwise over its entries). h must be convex,
    non-decreasing and h(0) = 0; then the relaxed problem is convex where the original is.

    `relaxation` and `cost` see detached tensors; `price` sees lambda with its gradient and must return lambda
    itself (the default) unless the cost caps it.
    """

    def relaxation(self, multiplier: torch.Tensor, violation: torch.Tensor) -> torch.Tensor:
        """u*: the relaxation each entry takes at price `multiplier` ([n]), given its `violation` ([n]), >= 0."""

    def cost(self, relaxation: torch.Tensor) -> torch.Tensor:
        """h(u), elementwise ([n])."""

    def price(self, multiplier: torch.Tensor) -> torch.Tensor:
        """The lambda both Lagrangian terms read: `multiplier`, or a capped value where h's slope is bounded."""


def _positive(value: float, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class Quadratic:
    """h(u) = alpha u^2 / 2: u* = lambda / alpha (a constraint whose lambda would reach L relaxes by L / alpha).

    Args:
        alpha: the price's curvature, in the units of 1 / (violation units)^2 per objective unit; large alpha
            relaxes little (alpha -> infinity is the hard constraint).
    """

    alpha: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "alpha", _positive(self.alpha, "alpha"))

    def relaxation(self, multiplier: torch.Tensor, violation: torch.Tensor) -> torch.Tensor:
        return multiplier.clamp_min(0) / self.alpha

    def cost(self, relaxation: torch.Tensor) -> torch.Tensor:
        return 0.5 * self.alpha * relaxation.pow(2)

    def price(self, multiplier: torch.Tensor) -> torch.Tensor:
        return multiplier


@dataclass(frozen=True)
class Linear:
    """h(u) = beta u: lambda is capped at beta, and a constraint whose lambda reaches beta relaxes by exactly its
    violation (an exact penalty of weight beta).

    Args:
        beta: the price of one unit of relaxation, in objective units per violation unit.
    """

    beta: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "beta", _positive(self.beta, "beta"))

    def relaxation(self, multiplier: torch.Tensor, violation: torch.Tensor) -> torch.Tensor:
        at_cap = multiplier >= self.beta
        return torch.where(at_cap, violation.clamp_min(0), torch.zeros_like(violation))

    def cost(self, relaxation: torch.Tensor) -> torch.Tensor:
        return self.beta * relaxation

    def price(self, multiplier: torch.Tensor) -> torch.Tensor:
        """min(lambda, beta) in value; lambda's gradient passes unchanged (so a capped lambda can come down)."""
        return multiplier - (multiplier - self.beta).clamp_min(0).detach()


def relaxation_term(cost: RelaxationCost, multiplier: torch.Tensor, violation: torch.Tensor) -> torch.Tensor:
    """[n] h(u*) - lambda u*, with u* = `cost.relaxation(lambda, g)` held fixed: added to lambda g, its value is the
    relaxed dual term and its gradient in lambda is -u* (so the dual ascends on g - u*).

    Args:
        multiplier: [n] lambda as the terms read it (`cost.price`), with its gradient.
        violation: [n] the violations the dual step reads (detached).
    """
    relaxation = cost.relaxation(multiplier.detach(), violation.detach())
    return cost.cost(relaxation) - multiplier * relaxation


def relaxation_report(cost: RelaxationCost, multiplier: torch.Tensor, violation: torch.Tensor) -> dict[str, float]:
    """The `ConstraintReport` fields of a relaxed constraint (reads the device): the relaxation u's mean and max
    over the entries, and the violation against the relaxed bound, g - u (mean, and the share <= 0).

    Args:
        multiplier: [n] the lambdas the step used (one for a multiplier that prices the mean violation).
        violation: [n] (or [B] with one lambda: its mean is what was priced) the violations.
    """
    g = violation.detach()
    if multiplier.numel() == 1 and g.numel() != 1:
        g = g.mean().reshape(1)
    if g.numel() == 0:
        nan = float("nan")
        return {"relaxation_mean": nan, "relaxation_max": nan, "relaxed_violation_mean": nan,
                "relaxed_satisfied_fraction": nan}
    u = cost.relaxation(multiplier.detach(), g)
    numbers = torch.stack([u.mean(), u.max(), (g - u).mean(), (g - u <= 0).float().mean()]).tolist()
    return dict(zip(("relaxation_mean", "relaxation_max", "relaxed_violation_mean", "relaxed_satisfied_fraction"),
                    numbers))


def check_relaxation(cost: object, name: str) -> None:
    """Refuses a relaxation that does not implement `RelaxationCost`, naming the constraint and the class."""
    if not isinstance(cost, RelaxationCost):
        raise TypeError(f"constraint {name!r}: relax must implement constrained.RelaxationCost (relaxation, cost, "
                        f"price), got {type(cost).__name__}")


__all__ = ["Linear", "Quadratic", "RelaxationCost", "check_relaxation", "relaxation_report", "relaxation_term"]
