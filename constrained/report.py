"""Per-step numbers about each constraint, as plain Python floats ready to log."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Optional, Union

import torch

from ._tensors import converted, detached


@dataclass(frozen=True)
class ConstraintReport:
    """Statistics of one constraint over one batch (NaN where the batch held no entry of it).

    Attributes:
        violation_mean: mean of d - m over the batch (<= 0 is good on average).
        violation_max: largest per-sample violation.
        satisfied_fraction: fraction of samples with d - m <= 0, in [0, 1].
        multiplier_mean: mean lambda over the batch (the fixed weight for a penalty). A batch that held no
            entry of the constraint (no row eligible under `where=`) reports a lookup multiplier's mean over all
            its entries instead, and NaN for a multiplier whose lambda(x) needs an x.
        multiplier_max: largest lambda over the batch (the same rule).
        group_violations: group constraints only: each multiplier's mean violation on the batch (one per
            side, stratum and group; NaN where the group was absent).
        group_labels: what each entry of `group_violations` prices ("group0", "upper/stratum1/group0", ...;
            `GroupConstraint.multiplier_labels`).
        relaxation_mean, relaxation_max: relaxed constraints only (`constrained.relaxation`): the relaxation
            u >= 0 each entry took, over the step's entries (None for a constraint without relaxation).
        relaxed_violation_mean, relaxed_satisfied_fraction: relaxed constraints only: the violation against the
            relaxed bound, g - u (the bound plus u), its mean and the share of entries within it.
    """

    violation_mean: float
    violation_max: float
    satisfied_fraction: float
    multiplier_mean: float
    multiplier_max: float
    group_violations: tuple[float, ...] = ()
    group_labels: tuple[str, ...] = ()
    relaxation_mean: Optional[float] = None
    relaxation_max: Optional[float] = None
    relaxed_violation_mean: Optional[float] = None
    relaxed_satisfied_fraction: Optional[float] = None

    def as_dict(self, name: str) -> dict[str, float]:
        """Flat {"<name>/<field>": number}; `group_violations` gives one entry per multiplier, keyed by what it
        prices ("<name>/group_violations/upper/group0"; by position where no labels were given)."""
        flat: dict[str, float] = {}
        for key, value in asdict(self).items():
            if key == "group_labels" or value is None:  # labels are keys; None: a field this constraint lacks
                continue
            if isinstance(value, (tuple, list)):
                labels = self.group_labels if len(self.group_labels) == len(value) else range(len(value))
                flat.update({f"{name}/{key}/{label}": v for label, v in zip(labels, value)})
            else:
                flat[f"{name}/{key}"] = value
        return flat

    @staticmethod
    def statistics(violation: torch.Tensor, multiplier: torch.Tensor, entries: Optional[torch.Tensor] = None
                   ) -> torch.Tensor:
        """The five common fields, in order, as a [5] float tensor on the violations' device (no sync).

        Args:
            violation: [B] violations (detached inside).
            multiplier: [B] or [1] multiplier values.
            entries: [N] every entry of a lookup multiplier: the multiplier fields of a batch with no violation.
        """
        violation = converted(detached(violation), torch.float32)
        if violation.numel() == 0:  # no entry in the batch: no violation was measured, lambda's own table still is
            fields = torch.full((5,), float("nan"), device=violation.device)
            if entries is not None and entries.numel():
                entries = converted(detached(entries), torch.float32, violation.device)
                fields[3:] = torch.stack([entries.mean(), entries.max()])
            return fields
        multiplier = converted(detached(multiplier), torch.float32, violation.device)
        return torch.stack([violation.mean(), violation.max(), (violation <= 0).float().mean(), multiplier.mean(),
                            multiplier.max()])


class DeferredReports(Mapping[str, ConstraintReport]):
    """{constraint name: `ConstraintReport`}, computed when first read.

    A step keeps its detached violations and multiplier values and turns them into numbers (one transfer from
    the device) only if the report is read: a loop that logs every N steps does not pay for the other N - 1.
    The numbers are those of the step's own tensors whenever they are read. A report still held two steps
    later is computed then by `PrimalDual`, so keeping every step's report holds numbers, not tensors.

    Args:
        names: the constraint names, in report order.
        compute: () -> {name: ConstraintReport} for exactly `names`; called at most once.
    """

    def __init__(self, names: tuple[str, ...], compute: Callable[[Optional[list[float]]], dict[str, ConstraintReport]],
                 statistics: Optional[Callable[[], torch.Tensor]] = None) -> None:
        self._names = names
        self._compute: Optional[Callable[[Optional[list[float]]], dict[str, ConstraintReport]]] = compute
        self._statistics = statistics
        self._reports: Optional[dict[str, ConstraintReport]] = None

    def statistics_tensor(self) -> Optional[torch.Tensor]:
        """The common fields of every constraint, 5 per name in report order, as one float tensor on the device
        (no sync), while the reports are pending; None once computed. A caller reading numbers of its own fuses
        these into that read and passes them back to `materialize`."""
        if self._reports is not None or self._statistics is None:
            return None
        return self._statistics()

    def materialize(self, numbers: Optional[list[float]] = None) -> dict[str, ConstraintReport]:
        """Computes the reports (once) and releases the step's tensors; returns {name: report}. `PrimalDual`
        calls it for a report still held two steps later.

        Args:
            numbers: the values of `statistics_tensor()`, already read by the caller (no second transfer).
        """
        if self._reports is None:
            assert self._compute is not None
            self._reports = self._compute(numbers)
            self._compute = self._statistics = None  # drop the step's tensors
        return self._reports

    @property
    def pending(self) -> bool:
        """True while the reports are not computed yet (the step's tensors are held)."""
        return self._reports is None

    def __getitem__(self, name: str) -> ConstraintReport:
        return self.materialize()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def __repr__(self) -> str:
        return repr(self.materialize())


class StepReport:
    """What one `PrimalDual.step` did.

    Attributes:
        loss: the objective f (without constraint terms), a float.
        lagrangian: the primal Lagrangian that was back-propagated, a float.
        finite: whether the step's Lagrangian, gradients and strict violations were all finite (always True
            for a step with `PrimalDual(checks="eager")`, which raises instead).
        constraints: one `ConstraintReport` per constraint name (a `DeferredReports` from `PrimalDual`: computed
            on first read).
        dual_updated: whether this step ended with a dual update.
        primal_steps: primal updates taken so far (including this one).
        dual_steps: dual updates taken so far.
        skipped: fp16 with a `GradScaler`: the gradients overflowed, so neither the primal nor the dual
            update was applied (the scaler lowered its scale; the step still counts in the K:1 schedule).
        after_update: `loss` and `constraints` describe the model after this step's primal update (the
            re-evaluation of mode="alternating" before its dual step); otherwise they describe the model the
            closure evaluated before the update.
        misc: each closure's own third return value (None where it returned two), in the order of the closures,
            from the evaluation the primal update differentiated (not an L-BFGS re-evaluation, nor
            mode="alternating"'s re-evaluation after the update).

    `loss`, `lagrangian` and `finite` may be given as device tensors (`PrimalDual(checks="deferred")` does):
    they are then read to floats together, in one transfer, when one of them is first read, and
    `scalars_tensor()` hands them to a caller that fuses them into a read of its own.
    """

    def __init__(self, loss: Union[float, torch.Tensor], lagrangian: Union[float, torch.Tensor],
                 constraints: Optional[Mapping[str, ConstraintReport]] = None, dual_updated: bool = False,
                 primal_steps: int = 0, dual_steps: int = 0, skipped: bool = False, after_update: bool = False,
                 finite: Union[bool, torch.Tensor] = True, misc: tuple[Any, ...] = ()) -> None:
        self._pending: Optional[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = None
        if any(isinstance(v, torch.Tensor) for v in (loss, lagrangian, finite)):
            loss_t, lagrangian_t, finite_t = (torch.as_tensor(v).detach().float().reshape(()) for v in (loss, lagrangian, finite))
            self._pending = (loss_t, lagrangian_t, finite_t)
            self._scalars: Optional[tuple[float, float, bool]] = None
        else:
            self._scalars = (float(loss), float(lagrangian), bool(finite))
        self.constraints: Mapping[str, ConstraintReport] = {} if constraints is None else constraints
        self.dual_updated, self.primal_steps, self.dual_steps = dual_updated, primal_steps, dual_steps
        self.skipped, self.after_update = skipped, after_update
        self.misc = misc

    def scalars_tensor(self) -> Optional[torch.Tensor]:
        """[loss, lagrangian, finite (1.0 or 0.0)] as one float tensor on the device, while not yet read (None once
        they are floats): for a caller that reads them together with its own numbers."""
        return None if self._pending is None else torch.stack(self._pending)

    def _read(self) -> tuple[float, float, bool]:
        if self._scalars is None:
            assert self._pending is not None
            loss, lagrangian, finite = torch.stack(self._pending).tolist()  # one transfer for the three
            self._scalars, self._pending = (loss, lagrangian, finite > 0), None
        return self._scalars

    @property
    def loss(self) -> float:
        return self._read()[0]

    @property
    def lagrangian(self) -> float:
        return self._read()[1]

    @property
    def finite(self) -> bool:
        return self._read()[2]

    def raise_if_not_finite(self) -> None:
        """Raises FloatingPointError when the step met a non-finite Lagrangian, gradient or strict violation
        (one read, for `checks="deferred"`; the update was applied, so the model may hold non-finite weights)."""
        if not self.finite:
            raise FloatingPointError(f"a primal-dual step met a non-finite value (Lagrangian {self.lagrangian}); "
                                     "the model may hold non-finite weights now: restore an earlier state")

    def as_dict(self) -> dict[str, float]:
        """Flat {name: number} view, e.g. {"loss": .., "clean/satisfied_fraction": ..}."""
        flat: dict[str, float] = {
            "loss": self.loss,
            "lagrangian": self.lagrangian,
            "dual_updated": float(self.dual_updated),
            "primal_steps": float(self.primal_steps),
            "dual_steps": float(self.dual_steps),
            "skipped": float(self.skipped),
            "after_update": float(self.after_update),
        }
        for name, report in self.constraints.items():
            flat.update(report.as_dict(name))
        return flat

    def __repr__(self) -> str:
        return f"StepReport({self.as_dict()!r})"
