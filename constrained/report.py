"""Per-step numbers about each constraint, as plain Python floats ready to log."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from typing import Optional

import torch

from ._tensors import converted, detached


@dataclass(frozen=True)
class ConstraintReport:
    """Statistics of one constraint over one batch (NaN where the batch held no entry of it).

    Attributes:
        violation_mean: mean of d - m over the batch (<= 0 is good on average).
        violation_max: largest per-sample violation.
        satisfied_fraction: fraction of samples with d - m <= 0, in [0, 1].
        multiplier_mean: mean lambda over the batch (the fixed weight for a penalty).
        multiplier_max: largest lambda over the batch.
        group_violations: group constraints only: each multiplier's mean violation on the batch (one per
            side, stratum and group; NaN where the group was absent).
    """

    violation_mean: float
    violation_max: float
    satisfied_fraction: float
    multiplier_mean: float
    multiplier_max: float
    group_violations: tuple[float, ...] = ()

    @staticmethod
    def statistics(violation: torch.Tensor, multiplier: torch.Tensor) -> torch.Tensor:
        """The five common fields, in order, as a [5] float tensor on the violations' device (no sync).

        Args:
            violation: [B] violations (detached inside).
            multiplier: [B] or [1] multiplier values.
        """
        violation = converted(detached(violation), torch.float32)
        if violation.numel() == 0:  # a group constraint with no group present in the batch: nothing was measured
            return torch.full((5,), float("nan"), device=violation.device)
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

    def __init__(self, names: tuple[str, ...], compute: Callable[[], dict[str, ConstraintReport]]) -> None:
        self._names = names
        self._compute: Optional[Callable[[], dict[str, ConstraintReport]]] = compute
        self._reports: Optional[dict[str, ConstraintReport]] = None

    def materialize(self) -> dict[str, ConstraintReport]:
        """Computes the reports (once) and releases the step's tensors; returns {name: report}. `PrimalDual`
        calls it for a report still held two steps later."""
        if self._reports is None:
            assert self._compute is not None
            self._reports = self._compute()
            self._compute = None  # drop the step's tensors
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


@dataclass(frozen=True)
class StepReport:
    """What one `PrimalDual.step` did.

    Attributes:
        loss: the objective f (without constraint terms).
        lagrangian: the primal Lagrangian that was back-propagated.
        constraints: one `ConstraintReport` per constraint name (a `DeferredReports` from `PrimalDual`: computed
            on first read).
        dual_updated: whether this step ended with a dual update.
        primal_steps: primal updates taken so far (including this one).
        dual_steps: dual updates taken so far.
        dual_seconds: wall time of this step's dual work (building the dual term and the dual update; its backward
            pass shares the primal one's, except in mode="alternating"; synchronised on GPUs).
        skipped: fp16 with a `GradScaler`: the gradients overflowed, so neither the primal nor the dual
            update was applied (the scaler lowered its scale; the step still counts in the K:1 schedule).
        after_update: `loss` and `constraints` describe the model after this step's primal update (the
            re-evaluation of mode="alternating" before its dual step); otherwise they describe the model the
            closure evaluated before the update.
    """

    loss: float
    lagrangian: float
    constraints: Mapping[str, ConstraintReport] = field(default_factory=dict)
    dual_updated: bool = False
    primal_steps: int = 0
    dual_steps: int = 0
    dual_seconds: float = 0.0
    skipped: bool = False
    after_update: bool = False

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
            for key, value in asdict(report).items():
                if isinstance(value, (tuple, list)):
                    flat.update({f"{name}/{key}/{i}": v for i, v in enumerate(value)})
                else:
                    flat[f"{name}/{key}"] = value
        return flat
