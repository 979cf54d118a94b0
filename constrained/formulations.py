"""How a constraint enters the training objective, chosen apart from its declaration.

- `Lagrangian()`: L = f + E[lambda * g]; lambda is learned by dual ascent (default).
- `AugmentedLagrangian(penalty)`: adds the quadratic term of Nocedal & Wright
  (17.65) with coefficient `penalty`; lambda is learned by dual ascent.
- `FixedPenalty(weight)`: L = f + weight * E[g] with no dual variable: the
  paper's "naive regularization" (Eq. 3) when g = d - m.

The Lagrangian terms themselves are cooper's; `FixedPenalty` is a cooper
`Formulation` added here because cooper has no linear fixed penalty.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import cooper
import torch
from cooper.formulations import ContributionStore

from ._validation import check_nonnegative_finite


class _LinearPenaltyFormulation(cooper.formulations.Formulation):
    """Primal contribution c * sum_i g_i; no dual variables."""

    expects_multiplier = False
    expects_penalty_coefficient = True

    def compute_contribution_to_primal_lagrangian(
        self, constraint_state: cooper.ConstraintState, penalty_coefficient: Optional[cooper.penalty_coefficients.PenaltyCoefficient]
    ) -> Optional[ContributionStore]:
        if not constraint_state.contributes_to_primal_update:
            return None
        violation, _, coefficient = self._prepare_kwargs_for_lagrangian_contribution(
            constraint_state=constraint_state,
            multiplier=None,
            penalty_coefficient=penalty_coefficient,
            primal_or_dual="primal",
        )
        return ContributionStore(torch.einsum("i...,i...->", coefficient, violation), None, coefficient)

    def compute_contribution_to_dual_lagrangian(
        self, constraint_state: cooper.ConstraintState, penalty_coefficient: Optional[cooper.penalty_coefficients.PenaltyCoefficient]
    ) -> None:
        return None


@dataclass(frozen=True)
class Lagrangian:
    """The Lagrangian f + E[lambda g]; lambda >= 0 learned by dual ascent."""

    needs_multiplier = True

    def cooper_type(self) -> type:
        return cooper.formulations.Lagrangian

    def penalty(self) -> Optional[float]:
        return None


@dataclass(frozen=True)
class AugmentedLagrangian:
    """Lagrangian plus a quadratic penalty on violations (cooper's AugmentedLagrangian).

    Args:
        penalty_weight: quadratic coefficient c > 0.
    """

    penalty_weight: float = 1.0
    needs_multiplier = True

    def __post_init__(self) -> None:
        value = check_nonnegative_finite(self.penalty_weight, "penalty_weight")
        if value == 0:
            raise ValueError("penalty_weight must be > 0 for an augmented Lagrangian, got 0")
        object.__setattr__(self, "penalty_weight", value)

    def cooper_type(self) -> type:
        return cooper.formulations.AugmentedLagrangian

    def penalty(self) -> Optional[float]:
        return self.penalty_weight


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

    def cooper_type(self) -> type:
        return _LinearPenaltyFormulation

    def penalty(self) -> Optional[float]:
        return self.weight


Formulation = Lagrangian | AugmentedLagrangian | FixedPenalty
