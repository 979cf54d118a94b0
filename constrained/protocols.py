"""The contract between `PrimalDual` and what it steps: the `Observation` a constraint returns, and the
protocols a constraint, a multiplier and a formulation implement. This module imports nothing concrete.

The library's own constraints (`Constraint`, `GroupConstraint`, `RateConstraint`), multipliers
(`ScalarMultiplier`, `IndexedMultiplier`, `GroupMultiplier`, `LinearMultiplier`, `MultiplierNetwork`) and
formulations (`Lagrangian`, `AugmentedLagrangian`, `FixedPenalty`) are implementations of these; the stepper
calls nothing else and never asks which concrete class it holds. A new constraint kind (a CVaR bound, a chance
constraint, ...), multiplier or formulation is a class in user code with these members: see
examples/custom_constraint_kind.py, whose multiplier is a plain `nn.Module`.

A constraint is observed on a batch by its own method (by convention `observe(...)`), which returns an
`Observation`: the per-entry violation [B] (<= 0 is satisfied), and optionally features, indices and a strict
violation for the dual step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator, Optional, Protocol, Sequence, runtime_checkable

import torch

from .validation import check_float_tensor


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

    constraint: "ConstraintKind"
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


@runtime_checkable
class ConstraintKind(Protocol):
    """A constraint `PrimalDual` can enforce. It must be hashable: it keys the {constraint: multiplier} mapping
    (a frozen dataclass, or a class that keeps object identity's __eq__ and __hash__).

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
        """Extra `ConstraintReport` fields for one step ({} for none), or replacements of its common ones.

        The common fields are per-entry statistics of `violation`. Where they do not mean what their names say,
        the kind overrides them here: an aggregate kind, whose bound holds on the batch mean rather than per
        sample, returns `{"satisfied_fraction": float(violation.mean() <= 0)}` (whether the aggregate holds) or
        NaN for "not defined". Called when the report is first read, so it may synchronise with the device.

        Args:
            observations: this step's observations of the constraint (one per micro-batch).
            violation: their concatenated violations as the dual step saw them, [sum of B], detached.
        """


@runtime_checkable
class MultiplierKind(Protocol):
    """A Lagrange multiplier `PrimalDual` can train: an `nn.Module` whose parameters are the dual variables
    (the stepper collects them in an `nn.ModuleDict`, so they reach the dual optimizer, `state_dict` and
    `.to(device)`), with these members. Nothing else is called; no base class is required.

    Attributes:
        averages_constraint: one lambda pricing the batch's mean violation (then `features_of` is not called
            and `value` gets None).
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

    def value(self, features: Optional[torch.Tensor]) -> torch.Tensor:
        """lambda for the entries `features` describes (what `features_of` returned; None when averaging):
        [n] with n the observation's entries, or [1] (or a scalar) for one lambda. Differentiable in the
        multiplier's parameters: the dual step ascends through it."""

    def bind(self, equality: bool) -> None:
        """Called once when `PrimalDual` binds the multiplier to its constraint: True for an equality (lambda
        of free sign), False for an inequality (lambda >= 0, kept so by `project_`)."""

    def project_(self) -> None:
        """Called after every dual optimizer step: puts the parameters back in the feasible set (e.g. clamps
        an explicit lambda of an inequality at 0; a no-op when a link keeps lambda >= 0)."""

    def parameters(self, recurse: bool = True) -> Iterator[torch.nn.Parameter]:
        """The dual variables (`nn.Module.parameters`)."""


@runtime_checkable
class HasEntries(Protocol):
    """An optional multiplier hook: a multiplier whose lambdas form a table (one per index or group, as
    `IndexedMultiplier` and `GroupMultiplier`) lists them, so reports can show every lambda (`Binding.entries`).
    A multiplier computed from features (lambda(x)) has no such table and leaves it out."""

    def entries(self) -> torch.Tensor:
        """[N] a detached copy of every lambda of the table."""


@runtime_checkable
class FitsFeatures(Protocol):
    """An optional multiplier hook: statistics fitted once on a sample of the features before training (a
    network multiplier's per-feature standardization). `PrimalDual.fit_features` calls it on the multipliers
    that have it; a multiplier without these members is left alone.

    Attributes:
        features_fitted: True once fitted, or when the multiplier fits nothing (reading it may read a device
            buffer: a host sync, so callers read it once, before training).
    """

    @property
    def features_fitted(self) -> bool: ...

    def fit_features(self, features: torch.Tensor) -> None:
        """Fits the statistics on [N, F] features of N typical samples (the features `features_of` returns)."""


@runtime_checkable
class Formulation(Protocol):
    """How a constraint enters the objective (`Lagrangian`, `AugmentedLagrangian`, `FixedPenalty`).

    Both terms are sums over an observation's n entries; `PrimalDual` scales them to expectations.

    Attributes:
        needs_multiplier: True when each constraint needs a multiplier (learned by dual ascent); False for a
            fixed weight, which `fixed_weight` then gives.
        fixed_weight: the constant lambda of a formulation without multipliers (reported as the multiplier),
            None otherwise.

    Optional class attributes (read with `getattr`, default False): `supports_relaxation`, a constraint's
    `relax=` cost may relax it (its dual term is relaxed by `constrained.relaxation`); `relaxed_primal`,
    `primal_term` then receives the relaxed violations g - u*(lambda) (u* held fixed), as a penalty on the
    violation needs (`AugmentedLagrangian`); the Lagrangian's primal gradient is the same either way.
    """

    @property
    def needs_multiplier(self) -> bool: ...

    @property
    def fixed_weight(self) -> Optional[float]: ...

    def primal_term(self, multiplier: Optional[torch.Tensor], violation: torch.Tensor, equality: bool) -> torch.Tensor:
        """The term the primal step differentiates, multipliers held fixed: scalar, from [n] lambda (None
        without multipliers) and [n] violations."""

    def dual_term(self, multiplier: torch.Tensor, violation: torch.Tensor) -> Optional[torch.Tensor]:
        """The term the dual step ascends, violations held fixed: scalar, or None without dual variables."""
