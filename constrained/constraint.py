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
from typing import TYPE_CHECKING, Any, ClassVar, Optional, Sequence

import torch

from .validation import check_float_tensor
from .divergences import Divergence
from .margins import FixedMargin, Margin

if TYPE_CHECKING:
    from .protocols import ConstraintKind


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
    """

    d: Divergence
    margin: Margin = field(default_factory=FixedMargin)
    name: str = "constraint"
    kind: str = "inequality"
    violation_rate: Optional[float] = None
    summed: ClassVar[bool] = False  # per-sample: the primal term is the batch mean (protocols.ConstraintKind)

    def __post_init__(self) -> None:
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


KINDS = ("inequality", "equality")


def check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    return kind


@dataclass(frozen=True)
class Observation:
    """One evaluation of a constraint on a batch.

    Args:
        constraint: the constraint observed (a `constrained.protocols.ConstraintKind`: `Constraint`,
            `GroupConstraint`, or a user's own kind).
        violation: [B] per-sample violation (differentiable w.r.t. the model), or for a group
            constraint one entry per (present group, side): what the primal step sees.
        features: optional [B, F] multiplier features.
        indices: optional [B] int64 dataset indices (group constraints: multiplier ids).
        strict_violation: optional [B] violation the dual step sees instead of `violation`, e.g. the
            true, non-differentiable rate when `violation` is a smooth surrogate of it (a proxy constraint).
        rows: the number of data rows observed, when it is not the violation's length (a group constraint
            has one entry per present group, whatever the batch size); `batch_size` reports it.
    """

    constraint: ConstraintKind
    violation: torch.Tensor
    features: Optional[torch.Tensor] = None
    indices: Optional[torch.Tensor] = None
    strict_violation: Optional[torch.Tensor] = None
    rows: Optional[int] = None

    def __post_init__(self) -> None:
        # a summed (group) constraint may have no entry in a batch: e.g. equal opportunity on a minibatch
        # without a positive label has no group rate to bound; it then adds nothing to this step
        empty_ok = bool(getattr(self.constraint, "summed", False))
        check_float_tensor(self.violation, "violation", allow_empty=empty_ok)
        if self.violation.dim() != 1:
            raise ValueError(f"violation must have shape [B], got {tuple(self.violation.shape)}")
        if self.strict_violation is not None:
            check_float_tensor(self.strict_violation, "strict_violation", allow_empty=empty_ok)
            if self.strict_violation.shape != self.violation.shape:
                raise ValueError(f"strict_violation must have the violation's shape {tuple(self.violation.shape)}, "
                                 f"got {tuple(self.strict_violation.shape)}")
            if self.strict_violation.requires_grad:
                raise ValueError("strict_violation feeds the dual step only: pass it detached (no gradient)")
        batch = self.violation.shape[0]
        if self.features is not None:
            check_float_tensor(self.features, "features")
            if self.features.shape[0] != batch:
                raise ValueError(
                    f"features must have batch size {batch} like the violation, got shape {tuple(self.features.shape)}"
                )
            if self.features.device != self.violation.device:
                raise ValueError(f"features on {self.features.device} but violation on {self.violation.device}")
        if self.indices is not None:
            if not isinstance(self.indices, torch.Tensor) or self.indices.dtype != torch.long:
                got = self.indices.dtype if isinstance(self.indices, torch.Tensor) else type(self.indices).__name__
                raise TypeError(f"indices must be an int64 tensor, got {got}")
            if self.indices.shape != (batch,):
                raise ValueError(f"indices must have shape [B]=[{batch}], got {tuple(self.indices.shape)}")

        if self.rows is not None and (isinstance(self.rows, bool) or not isinstance(self.rows, int) or self.rows < 0):
            raise ValueError(f"rows must be a non-negative int (the data rows observed), got {self.rows!r}")

    @property
    def batch_size(self) -> int:
        """The data rows observed: `rows` when given, else the violation's length."""
        return self.violation.shape[0] if self.rows is None else self.rows
