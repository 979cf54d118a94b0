"""A per-sample inequality constraint d(out(x), ref(x)) <= m(x), as a small value.

Example:
    >>> import torch
    >>> from constrained import Constraint, NormMargin, sq_l2
    >>> c = Constraint(d=sq_l2, margin=NormMargin(0.1))
    >>> out, ref = torch.zeros(3, 8), torch.ones(3, 8)
    >>> c.violation(out, ref)        # ||out - ref||^2 - 0.1 ||ref||^2 per sample; <= 0 means satisfied
    tensor([7.2000, 7.2000, 7.2000])
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Optional, Sequence, cast, get_args

import torch

from .divergences import Divergence
from .margins import FixedMargin, Margin
from .protocols import Observation
from .relaxation import check_relaxation


@dataclass(frozen=True)
class Constraint:
    """The semi-infinite constraint d(out(x), ref(x)) - m(ref(x)) <= 0 for almost every x.

    Args:
        d: divergence, (out [B, ...], ref [B, ...]) -> [B].
        margin: per-sample tolerance, ref [B, ...] -> [B] (default: 0).
        name: label used in reports and state dicts.
        kind: "inequality" (d - m <= 0, multiplier >= 0) or "equality" (d - m = 0, multiplier of free sign;
            needs a `ScalarMultiplier` or `IndexedMultiplier`).
        violation_rate: None (default): the dual step ascends on the violations d - m themselves. A share
            alpha in [0, 1): the dual step ascends on 1[d - m > 0] - alpha instead (a proxy Lagrangian, as for
            rate constraints), so a multiplier rises where more than alpha of the samples violate and falls to 0
            where fewer do; the primal step still descends on d - m. With a multiplier network this asks for
            at most alpha of the samples outside the margin in every neighbourhood the network resolves.
        relax: a `constrained.RelaxationCost` (`Quadratic(alpha)`, `Linear(beta)` or a user's): the constraint
            may relax itself by u(x) >= 0 at that price, d - m <= u, with u(x) = (h')^{-1}(lambda(x)) chosen by
            the problem (resilient constrained learning; `constrained.relaxation`). None: the bound is hard.
    """

    d: Divergence
    margin: Margin = field(default_factory=FixedMargin)
    name: str = "constraint"
    kind: Kind = "inequality"
    violation_rate: Optional[float] = None
    relax: Optional[Any] = None
    summed: ClassVar[bool] = False  # per-sample: the primal term is the batch mean (protocols.ConstraintKind)

    def __post_init__(self) -> None:
        if self.relax is not None:
            check_relaxation(self.relax, self.name)
        check_kind(self.kind)
        if not callable(self.d):
            raise TypeError(f"d must be callable (out, ref) -> [B], got {type(self.d).__name__}")
        if not callable(self.margin):
            raise TypeError(f"margin must be callable ref -> [B], got {type(self.margin).__name__}")
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"name must be a non-empty string, got {self.name!r}")
        if self.violation_rate is not None:
            if not isinstance(self.violation_rate, (int, float)) or not 0 <= self.violation_rate < 1:
                raise ValueError(f"violation_rate must be None or a share in [0, 1), got {self.violation_rate!r}")
            if self.kind != "inequality":
                raise ValueError("violation_rate applies to inequality constraints only")

    def check_multiplier(self, multiplier: Any) -> None:
        """Any multiplier of the protocol prices a per-sample constraint (equalities: one of free sign)."""

    def report_details(self, observations: Sequence[Observation], violation: torch.Tensor) -> dict[str, Any]:
        """No report fields beyond the common ones."""
        return {}

    def violation(self, out: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        """Per-sample violation d(out, ref) - m(ref).

        Args:
            out: [B, ...] output of the model being trained (carries gradient).
            ref: [B, ...] reference output (e.g. a frozen model's).

        Returns:
            [B] tensor; entry i <= 0 means sample i satisfies the constraint.
        """
        distance = self.d(out, ref)
        margin = self.margin(ref)
        if distance.shape != (out.shape[0],) or margin.shape != (out.shape[0],):
            raise ValueError(
                f"constraint {self.name!r}: d and margin must return shape [B]=[{out.shape[0]}], "
                f"got d {tuple(distance.shape)} and margin {tuple(margin.shape)}"
            )
        return distance - margin

    def observe(
        self,
        out: torch.Tensor,
        ref: torch.Tensor,
        *,
        features: Optional[torch.Tensor] = None,
        indices: Optional[torch.Tensor] = None,
    ) -> "Observation":
        """Evaluates the violation and packs what the multiplier needs.

        Args:
            out: [B, ...] model output.
            ref: [B, ...] reference output.
            features: [B, F] inputs of a multiplier network or linear multiplier
                (LORE: the reference embedding phi_0(x)); no gradient flows into them.
            indices: [B] int64 dataset indices for a per-sample multiplier.

        Returns:
            An `Observation` for `PrimalDual.step` (with the rate signal as its strict violation when
            `violation_rate` is set).
        """
        violation = self.violation(out, ref)
        strict = None
        if self.violation_rate is not None:
            strict = (violation.detach() > 0).to(violation.dtype) - self.violation_rate
        return Observation(self, violation, features=features, indices=indices, strict_violation=strict)


Kind = Literal["inequality", "equality"]
"""A constraint's sense: d - m <= 0 (a multiplier >= 0 prices it) or d - m = 0 (a multiplier of free sign)."""
KINDS: tuple[str, ...] = get_args(Kind)


def check_kind(kind: str) -> Kind:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    return cast(Kind, kind)


