"""How a constraint enters the training objective, chosen apart from its declaration: the library's
implementations of `constrained.protocols.Formulation`.

- `Lagrangian()`: L = f + E[lambda * g]; lambda is learned by dual ascent (default).
- `AugmentedLagrangian(penalty)`: adds the quadratic term of Nocedal & Wright
  (17.65) with coefficient `penalty`; lambda is learned by dual ascent.
- `FixedPenalty(weight)`: L = f + weight * E[g] with no dual variable: the
  paper's "naive regularization" (Eq. 3) when g = d - m.

Each formulation writes its own terms (a few tensor operations; the stepper calls them on every step, so they
avoid per-call machinery): `primal_term` is differentiated with respect to the model (multipliers held
fixed), `dual_term` with respect to the multipliers (violations held fixed). Both are sums over the entries;
`PrimalDual` scales them to expectations.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from .validation import check_nonnegative_finite

_DOT_DTYPES = (torch.float32, torch.float64)


def weighted_sum(weights: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """sum_i weights_i * values_i for [n] tensors (one fused dot product where the dtypes allow it)."""
    if weights.dtype == values.dtype and weights.dtype in _DOT_DTYPES and weights.dim() == 1 and values.dim() == 1:
        return torch.dot(weights, values)
    return (weights * values).sum()


@dataclass(frozen=True)
class Lagrangian:
    """The Lagrangian f + E[lambda g]; lambda >= 0 learned by dual ascent."""

    needs_multiplier = True
    fixed_weight = None
    #: a constraint's `relax` cost may relax it (`constrained.relaxation`): the dual term is the relaxed one
    supports_relaxation = True

    def primal_term(self, multiplier: Optional[torch.Tensor], violation: torch.Tensor, equality: bool) -> torch.Tensor:
        """sum_i lambda_i.detach() g_i: moves the model, not the multipliers. Shapes [n]."""
        assert multiplier is not None
        return weighted_sum(multiplier.detach(), violation)

    def dual_term(self, multiplier: torch.Tensor, violation: torch.Tensor) -> Optional[torch.Tensor]:
        """sum_i lambda_i g_i.detach(): its gradient is the violation, ascended by the dual step. Shapes [n]."""
        return weighted_sum(multiplier, violation.detach())


@dataclass(frozen=True)
class AugmentedLagrangian:
    """Lagrangian plus a quadratic penalty on violations (Nocedal & Wright, Numerical Optimization, 17.65 for
    inequalities, 17.36 for equalities).

    Args:
        penalty_weight: quadratic coefficient c > 0.
    """

    penalty_weight: float = 1.0
    needs_multiplier = True
    fixed_weight = None
    #: a relaxed constraint's penalty acts on the relaxed violation g - u (u held fixed): `primal_term` reads it
    supports_relaxation = True
    relaxed_primal = True

    def __post_init__(self) -> None:
        value = check_nonnegative_finite(self.penalty_weight, "penalty_weight")
        if value == 0:
            raise ValueError("penalty_weight must be > 0 for an augmented Lagrangian, got 0")
        object.__setattr__(self, "penalty_weight", value)

    def primal_term(self, multiplier: Optional[torch.Tensor], violation: torch.Tensor, equality: bool) -> torch.Tensor:
        """Inequality: (1 / 2c) sum_i (relu(lambda_i + c g_i)^2 - lambda_i^2), whose gradient in g is the
        multiplier after one projected ascent step, relu(lambda + c g). Equality: lambda . h + (c / 2) ||h||^2.
        lambda is held fixed. Shapes [n]."""
        assert multiplier is not None
        fixed, c = multiplier.detach(), self.penalty_weight
        if equality:
            return weighted_sum(fixed, violation) + 0.5 * c * violation.pow(2).sum()
        return (torch.relu(fixed + c * violation).pow(2) - fixed.pow(2)).sum() / (2 * c)

    def dual_term(self, multiplier: torch.Tensor, violation: torch.Tensor) -> Optional[torch.Tensor]:
        """sum_i lambda_i g_i.detach(), as for the Lagrangian. Shapes [n]."""
        return weighted_sum(multiplier, violation.detach())


@dataclass(frozen=True)
class FixedPenalty:
    """f + weight * E[g] with a fixed weight: the paper's naive regularization (Eq. 3).

    Args:
        weight: the fixed lambda, >= 0.
    """

    weight: float
    needs_multiplier = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "weight", check_nonnegative_finite(self.weight, "weight"))

    @property
    def fixed_weight(self) -> float:
        """The weight, reported as the constraint's multiplier."""
        return self.weight

    def primal_term(self, multiplier: Optional[torch.Tensor], violation: torch.Tensor, equality: bool) -> torch.Tensor:
        """weight * sum_i g_i. Shapes [n]."""
        return self.weight * violation.sum()

    def dual_term(self, multiplier: torch.Tensor, violation: torch.Tensor) -> Optional[torch.Tensor]:
        """None: a fixed penalty has no dual variable."""
        return None
