"""What `PrimalDual` needs from a constraint and from a multiplier, written down as protocols.

The library's own constraints (`Constraint`, `GroupConstraint`, `RateConstraint`) and multipliers
(`ScalarMultiplier`, `IndexedMultiplier`, `GroupMultiplier`, `LinearMultiplier`, `MultiplierNetwork`) are
implementations of these; the stepper never asks which concrete class it holds. A new constraint kind (a
CVaR bound, a chance constraint, ...) or a new multiplier is a class in user code that has these members:
see examples/custom_constraint_kind.py.

A constraint is observed on a batch by its own method (by convention `observe(...)`), which returns an
`Observation`: the per-entry violation [B] (<= 0 is satisfied), and optionally features, indices and a strict
violation for the dual step.
"""

from __future__ import annotations

from typing import Any, Optional, Protocol, Sequence, runtime_checkable

import torch

from .constraint import Observation


@runtime_checkable
class ConstraintKind(Protocol):
    """A constraint `PrimalDual` can enforce.

    Attributes:
        name: unique label in reports and state dicts.
        kind: "inequality" (violation <= 0) or "equality" (violation = 0; needs a multiplier of free sign).
        summed: how the primal Lagrangian reads an observation's entries: False averages them over the batch
            (per-sample constraints: an expectation); True sums them (one entry per group, each already a mean).
    """

    @property
    def name(self) -> str: ...

    @property
    def kind(self) -> str: ...

    @property
    def summed(self) -> bool: ...

    def check_multiplier(self, multiplier: Any) -> None:
        """Raises ValueError when `multiplier` cannot price this constraint (called once, at binding)."""

    def report_details(self, observations: Sequence[Observation], violation: torch.Tensor) -> dict[str, Any]:
        """Extra `ConstraintReport` fields for one step ({} for none).

        Args:
            observations: this step's observations of the constraint (one per micro-batch).
            violation: their concatenated violations as the dual step saw them, [sum of B], detached.
        """


@runtime_checkable
class MultiplierKind(Protocol):
    """A Lagrange multiplier `PrimalDual` can train. It must also be a cooper multiplier
    (`cooper.multipliers.Multiplier`, an `nn.Module` whose forward gives lambda).

    Attributes:
        averages_constraint: one lambda pricing the batch's mean violation (then `features_of` is not called).
        per_index: each entry owns one sample (lambda[index_i]): the dual term is not averaged over the
            batch, and across micro-batches and ranks its gradients are summed, not averaged.
        free_sign: lambda may be negative, so it can price an equality constraint.
    """

    @property
    def averages_constraint(self) -> bool: ...

    @property
    def per_index(self) -> bool: ...

    @property
    def free_sign(self) -> bool: ...

    def features_of(self, observation: Observation) -> Optional[torch.Tensor]:
        """What the multiplier is evaluated on for this observation: [B, F] features, [B] int64 indices, or
        None (a dense multiplier). Raises ValueError naming what the observation lacks."""
