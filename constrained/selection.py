"""Choosing the model to keep from a primal-dual run: the best feasible iterate.

Primal-dual iterates circle the constrained optimum; the last one may sit just
outside the feasible set (a rate constraint moves in jumps, and the dual keeps
correcting). Keeping the iterate with the lowest objective among those whose
constraints held on the training data (the least-violating one when none did)
is the usual remedy (Cotter et al. 2019, "Optimization with
non-differentiable constraints", Sec. 5; TFCO's `find_best_candidate_index`
keeps the same rule in spirit).
"""

from __future__ import annotations

import copy
import math
from typing import Any, Optional

import torch
from torch import nn

from .primal_dual import Closure, PrimalDual
from .report import StepReport


class BestIterate:
    """Runs `PrimalDual.step` and keeps a copy of the best iterate seen.

    Args:
        tolerance: a constraint holds when its largest (true) violation is <= tolerance.
        after: ignore the first `after` steps (the transient).

    The report of a step describes the model as the closure evaluated it before the update (or, when
    `StepReport.after_update`, as re-evaluated after it); `step` keeps the state the report describes
    (copies are cheap for the small models of fairness problems; for a large network, consider every N-th
    step only). A step whose batch held no entry of some constraint (e.g. equal opportunity on a batch
    without a positive label) cannot show that the iterate meets it: that iterate is not a candidate, and
    `unjudged` counts such steps.
    """

    def __init__(self, tolerance: float = 0.0, after: int = 0) -> None:
        if not (math.isfinite(tolerance) and tolerance >= 0):
            raise ValueError(f"tolerance must be finite and >= 0, got {tolerance}")
        if isinstance(after, bool) or not isinstance(after, int) or after < 0:
            raise ValueError(f"after must be an int >= 0 (steps to skip), got {after!r}")
        self.tolerance, self.after = tolerance, after
        self.steps = 0
        self.best_state: Optional[dict[str, Any]] = None
        self.best_key: Optional[tuple[int, float]] = None
        self.best_step: Optional[int] = None
        #: steps whose iterate was not a candidate: their batch did not observe every constraint
        self.unjudged = 0

    def step(self, primal_dual: PrimalDual, closure: Closure, model: nn.Module) -> StepReport:
        """One `primal_dual.step(closure)`; the evaluated iterate of `model` is kept if it is the best so far."""
        judged = self.steps >= self.after
        after = judged and primal_dual.next_report_after_update  # the report will describe the updated iterate
        state = _snapshot(model) if judged and not after else None
        report = primal_dual.step(closure)
        self.steps += 1
        if after:
            state = _snapshot(model)
        if state is not None:
            maxima = [r.violation_max for r in report.constraints.values()]
            if any(math.isnan(value) for value in maxima):  # a constraint with no entry in this batch: unjudged
                self.unjudged += 1
            else:
                self._offer(state, report.loss, max(maxima, default=0.0))
        return report

    def offer(self, model: nn.Module, objective: float, worst_violation: float) -> bool:
        """Considers `model` as it is now, judged by numbers measured elsewhere (e.g. on the whole training set,
        when the step reports are minibatch estimates); returns whether it became the kept iterate."""
        return self._offer(_snapshot(model), float(objective), float(worst_violation))

    def _offer(self, state: dict[str, Any], objective: float, worst: float) -> bool:
        if not (math.isfinite(objective) and math.isfinite(worst)):
            raise ValueError(f"an iterate needs a finite objective and worst violation to be compared, got "
                             f"objective={objective}, worst violation={worst}; it is not kept")
        key = (0, objective) if worst <= self.tolerance else (1, worst)  # feasible first, then objective
        if self.best_key is None or key < self.best_key:
            self.best_key, self.best_step, self.best_state = key, self.steps, state
            return True
        return False

    @property
    def feasible(self) -> bool:
        """Whether the kept iterate satisfied every constraint on the batch it was evaluated on."""
        return self.best_key is not None and self.best_key[0] == 0

    def restore(self, model: nn.Module) -> nn.Module:
        """Loads the kept iterate into `model`."""
        if self.best_state is None:
            raise RuntimeError("no iterate was kept yet (fewer steps than `after`?)")
        model.load_state_dict(self.best_state)
        return model


def _snapshot(model: nn.Module) -> dict[str, Any]:
    """A detached copy of `model`'s state (tensors cloned; much cheaper than a deepcopy for small models)."""
    return {key: value.detach().clone() if isinstance(value, torch.Tensor) else copy.deepcopy(value)
            for key, value in model.state_dict().items()}
