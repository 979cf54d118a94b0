"""The primal-dual stepper: K primal steps per dual step on a formulation's Lagrangian terms.

A constrained training loop in user code::

    constraint = Constraint(d=sq_l2, margin=NormMargin(0.1), name="clean")
    pd = PrimalDual(torch.optim.AdamW(model.parameters(), lr=1e-5),
                    {constraint: MultiplierNetwork(in_features=512)},
                    dual_lr=5e-4, primal_steps_per_dual=5)
    for x in loader:
        ref = reference(x)
        def closure():
            out = model(x)
            return objective(out), [constraint.observe(out, ref, features=ref)]
        for _ in range(pd.primal_steps_per_dual):      # Algorithm 1: K steps on one batch
            report = pd.step(closure)
        log(report.as_dict())

Each `step` takes one primal step on f + E_i[lambda_i.detach() g_i] (the formulation's primal term); every K-th
step also takes one dual ascent step on E_i[lambda_i g_i.detach()]: at that step's violations in "simultaneous"
mode (Algorithm 1 of the paper), at a re-evaluation after the K-th primal update in "alternating" mode.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any, Literal, Optional, Union, cast

import torch
from torch import nn

from .binding import Binding, bind, check_hashable
from .closures import Closure, Evaluation, primal_objective
from .dual_state import check_setup, check_values, constraint_settings, restore_state, saved_state
from .formulations import Lagrangian
from .passes import accumulate, all_finite, reevaluate_for_dual
from .protocols import ConstraintKind, FitsFeatures, Formulation, MultiplierKind
from .report import StepReport
from .summaries import RecentReports, mean_of, summarize
from .updates import PAPER_DUAL_LR, DualOptimizerFactory, DualUpdate, PrimalUpdate
from .validation import check_positive_int

MODES = ("simultaneous", "alternating")
CHECKS = ("eager", "deferred")
__all__ = ["CHECKS", "Closure", "DualOptimizerFactory", "MODES", "PAPER_DUAL_LR", "PrimalDual"]


class PrimalDual:
    """Enforces per-sample constraints on a model trained by `primal_optimizer`.

    Args:
        primal_optimizer: optimizer of the model's parameters (theta).
        constraints: {constraint: multiplier} (multiplier None for `FixedPenalty`); any constraint and
            multiplier implementing `constrained.protocols.ConstraintKind` / `MultiplierKind`,
            or a sequence of constraints when the formulation needs no multiplier.
        formulation: a `constrained.protocols.Formulation`: `Lagrangian()` (the default, also for None),
            `AugmentedLagrangian(c)` or `FixedPenalty(w)`.
        dual_optimizer: a factory params -> optimizer of the multipliers, with maximize=True (e.g.
            ``lambda p: nuPI(p, lr=..., Kp=..., maximize=True)``). Default: plain ascent SGD(dual_lr) (Algorithm 1).
        dual_lr: learning rate of the default dual optimizer (None: the paper's 5e-4); refused with
            `dual_optimizer`, which carries its own rate.
        primal_steps_per_dual: K >= 1, primal steps per dual step (paper default 5).
        mode: "simultaneous" (Algorithm 1) or "alternating".
        scaler: a `torch.amp.GradScaler` for fp16 (not needed for bf16/fp32); a step whose scaled gradients
            overflow skips both updates (`StepReport.skipped`). Its state is part of `state_dict()`.
        around_dual: () -> a context manager entered around each piece of dual work (building the dual term,
            its backward pass in mode="alternating", the dual update): e.g. a timer. Default: none.
        checks: "eager" (default): each step reads its loss, Lagrangian and whether every gradient is finite in
            one transfer from the device, and raises FloatingPointError before a non-finite update. "deferred":
            no transfer at all; the step is applied, and its `StepReport.finite` (or `scalars_tensor()`, to fuse
            into a read of the caller's own) says afterwards whether it met a non-finite value: for a GPU loop
            that must not wait for the host (lore's training engine reads it once per batch).

    `torch.optim.LBFGS` as primal optimizer re-evaluates the primal Lagrangian (multipliers fixed): one `step`
    is a quasi-Newton best response; pair it with mode="alternating" (benchmarks/fairness.py).
    """

    def __init__(
        self,
        primal_optimizer: torch.optim.Optimizer,
        constraints: Union[Mapping[ConstraintKind, Optional[MultiplierKind]], Sequence[ConstraintKind]],
        *,
        formulation: Optional[Formulation] = None,
        dual_optimizer: Optional[DualOptimizerFactory] = None,
        dual_lr: Optional[float] = None,
        primal_steps_per_dual: int = 1,
        mode: Literal["simultaneous", "alternating"] = "simultaneous",
        scaler: Optional[torch.amp.GradScaler] = None,
        around_dual: Optional[Callable[[], AbstractContextManager[Any]]] = None,
        checks: Literal["eager", "deferred"] = "eager",
    ) -> None:
        self.primal = PrimalUpdate(primal_optimizer, scaler)
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if checks not in CHECKS:
            raise ValueError(f"checks must be one of {CHECKS}, got {checks!r}")
        self.checks = checks
        if not isinstance(constraints, Mapping):
            for constraint in constraints:
                check_hashable(constraint)
            constraints = {c: None for c in constraints}
        self.formulation = formulation if formulation is not None else Lagrangian()
        if not isinstance(self.formulation, Formulation):
            raise TypeError("formulation must implement constrained.protocols.Formulation (needs_multiplier, "
                            f"fixed_weight, primal_term, dual_term), got {type(self.formulation).__name__}")
        self.primal_steps_per_dual = check_positive_int(primal_steps_per_dual, "primal_steps_per_dual")
        self.mode = mode
        self.primal_steps = 0
        self.dual_steps = 0
        self._around_dual = around_dual if around_dual is not None else nullcontext
        self._recent = RecentReports()
        self._bindings: dict[str, Binding] = {}
        for constraint, multiplier in constraints.items():
            self._bindings[constraint.name] = bind(constraint, multiplier, self.formulation, self._bindings)
        self.multipliers = nn.ModuleDict({name: cast(nn.Module, b.multiplier) for name, b in self._bindings.items()
                                          if b.multiplier is not None})  # binding checked each is an nn.Module
        self.dual = DualUpdate(self.multipliers, {n: b.per_index for n, b in self._bindings.items()}, dual_optimizer,
                               dual_lr, type(self.formulation).__name__)

    @property
    def dual_optimizer(self) -> Optional[torch.optim.Optimizer]:
        """The multipliers' optimizer (None without dual variables)."""
        return self.dual.optimizer

    @property
    def primal_optimizer(self) -> torch.optim.Optimizer:
        """The model's optimizer (settable: e.g. Lightning's wrapper of the same optimizer)."""
        return self.primal.optimizer

    @primal_optimizer.setter
    def primal_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        self.primal = PrimalUpdate(optimizer, self.scaler)

    @property
    def scaler(self) -> Optional[torch.amp.GradScaler]:
        """The GradScaler (fp16), or None."""
        return self.primal.scaler

    def step(self, closure: Closure) -> StepReport:
        """One primal step, plus a dual step when K primal steps have been taken.

        Args:
            closure: evaluates the model; returns (loss, observations): a scalar f, one `Observation` per constraint.

        Returns:
            A `StepReport` of the observations the last update used.
        """
        return self.step_accumulated([closure])

    def step_accumulated(self, closures: Sequence[Closure]) -> StepReport:
        """Like `step`, with gradients accumulated over micro-batches before the updates.

        Each closure evaluates one micro-batch (all of the same number of rows, `Observation.batch_size`); the
        Lagrangians are averaged over them, so the update equals `step` on the whole batch with one micro-batch's
        activations alive at a time. A group constraint's terms average each micro-batch's group means: the
        whole batch's when every micro-batch holds each group in the same proportion.

        Args:
            closures: one closure per micro-batch, as for `step`.

        Returns:
            A `StepReport` over all micro-batches.
        """
        if not closures:
            raise ValueError("closures is empty")
        weight = 1.0 / len(closures)
        dual_due = self._dual_due()
        dual_in_pass = dual_due and self.mode == "simultaneous" and self.dual_optimizer is not None
        self._zero_grad(dual=dual_in_pass)
        try:
            evaluations, values, lagrangians = self._accumulate(closures, weight, dual_in_pass)
        except (TypeError, ValueError, FloatingPointError):
            self._zero_grad(dual=True)  # a refused closure leaves no partial gradient behind
            raise
        loss: Union[float, torch.Tensor] = mean_of([e.loss for e in evaluations])
        lagrangian: Union[float, torch.Tensor] = mean_of(lagrangians)
        finite = self._finite(cast(torch.Tensor, lagrangian), evaluations)
        if self.checks == "eager":
            loss, lagrangian = self._read_or_raise(cast(torch.Tensor, loss), cast(torch.Tensor, lagrangian), finite)
        misc = tuple(e.misc for e in evaluations)  # from the evaluations the primal update differentiated
        skipped = self._update_primal(closures, weight)
        self.primal_steps += 1
        updated = dual_due and not skipped
        if updated and self.mode == "alternating":
            evaluations, values = self._reevaluate_for_dual(closures, weight)
            loss = mean_of([e.loss for e in evaluations])
            if self.checks == "eager":
                loss = float(loss)
        reports = summarize([e.observations for e in evaluations], values,
                            lambda name, *details: self._bindings[name].report_details(*details),  # before lambda moves
                            lambda name: self._bindings[name].entries())
        if updated:
            self._update_dual()
        elif dual_in_pass:
            self._zero_grad(dual=True, primal=False)  # overflowed: this step's dual gradients are dropped too
        self._recent.track(reports)
        return StepReport(loss=loss, lagrangian=lagrangian, constraints=reports, dual_updated=updated,
                          primal_steps=self.primal_steps, dual_steps=self.dual_steps, skipped=skipped,
                          after_update=updated and self.mode == "alternating",
                          finite=True if self.checks == "eager" else finite, misc=misc)

    def _finite(self, lagrangian: torch.Tensor, evaluations: Sequence[Evaluation]) -> torch.Tensor:
        """Whether the step's Lagrangian, primal gradients and (deferred mode) strict violations are all finite,
        as a 0-dim bool tensor (no sync; `passes.all_finite`)."""
        return all_finite(lagrangian, self.primal.gradients_finite(), evaluations if self.checks == "deferred" else ())

    def _read_or_raise(self, loss: torch.Tensor, lagrangian: torch.Tensor, finite: torch.Tensor
                       ) -> tuple[float, float]:
        """checks="eager": the loss and Lagrangian as floats, read with the finiteness flag in one transfer;
        raises FloatingPointError, with every gradient cleared, before a non-finite update."""
        loss_value, lagrangian_value, ok = torch.stack([loss, lagrangian, finite.float()]).tolist()  # one sync
        if not ok:
            self._zero_grad(dual=True)
            if not math.isfinite(lagrangian_value):
                raise FloatingPointError(f"the Lagrangian is {lagrangian_value}; stopping before the update")
            raise FloatingPointError("a primal gradient is not finite although the Lagrangian is; stopping before "
                                     "the update (the weights are unchanged)")
        return loss_value, lagrangian_value

    def _accumulate(self, closures: Sequence[Closure], weight: float, with_dual: bool
                    ) -> tuple[list[Evaluation], list[dict[str, torch.Tensor]], list[torch.Tensor]]:
        """Evaluates each micro-batch and back-propagates weight x its primal Lagrangian (with the dual
        Lagrangian in the same backward pass when `with_dual`); see `passes.accumulate`."""
        return accumulate(closures, self._bindings, self.formulation, weight, scaled=self.primal.scaled,
                          around_dual=self._around_dual if with_dual else None, check_finite=self.checks == "eager")

    def _reevaluate_for_dual(self, closures: Sequence[Closure], weight: float
                             ) -> tuple[list[Evaluation], list[dict[str, torch.Tensor]]]:
        """mode="alternating": the updated model evaluated again for the dual step (`passes.reevaluate_for_dual`)."""
        self._zero_grad(dual=True, primal=False)
        return reevaluate_for_dual(closures, self._bindings, self.formulation, weight, around_dual=self._around_dual,
                                   ascend=self.dual_optimizer is not None, check_finite=self.checks == "eager")

    def _update_primal(self, closures: Sequence[Closure], weight: float) -> bool:
        """The primal update; True when the scaler skipped it."""
        return self.primal.step(lambda: primal_objective(closures, self._bindings, self.formulation, weight))

    def _update_dual(self) -> None:
        with self._around_dual():
            self.dual.step()
        self.dual_steps += 1

    def _zero_grad(self, dual: bool, primal: bool = True) -> None:
        if primal:
            self.primal_optimizer.zero_grad(set_to_none=True)
        if dual:
            self.dual.zero_grad()

    def _dual_due(self) -> bool:
        """Whether the next step also updates the dual (every K-th primal step)."""
        return (self.primal_steps + 1) % self.primal_steps_per_dual == 0

    @property
    def next_report_after_update(self) -> bool:
        """Whether the next step's report will describe the iterate after its update (alternating mode, on a
        dual step; `StepReport.after_update`): a caller keeping the evaluated iterate snapshots after it."""
        return self.mode == "alternating" and self._dual_due()

    def multiplier(self, name: str) -> Optional[MultiplierKind]:
        """The multiplier bound to constraint `name` (None under a fixed penalty)."""
        if name not in self._bindings:
            raise KeyError(f"no constraint named {name!r}; have {sorted(self._bindings)}")
        return self._bindings[name].multiplier

    def unfitted_features(self) -> list[str]:
        """The constraints whose multiplier has a `FitsFeatures` hook not fitted yet (reads each one's state: a host
        read; call it before training, not per step)."""
        return [name for name, binding in self._bindings.items()
                if isinstance(binding.multiplier, FitsFeatures) and not binding.multiplier.features_fitted]

    def fit_features(self, features: torch.Tensor, names: Optional[Sequence[str]] = None) -> None:
        """Calls the `FitsFeatures` hook of the multipliers bound to `names` (default: every one that has it) with
        [N, F] features of N typical samples, e.g. phi_0 of a thousand training images."""
        for name in self._bindings if names is None else names:
            multiplier = self.multiplier(name)
            if isinstance(multiplier, FitsFeatures):
                multiplier.fit_features(features)

    def _setup(self) -> dict[str, Any]:
        return {"constraints": sorted(self._bindings), "formulation": repr(self.formulation),
                "primal_steps_per_dual": self.primal_steps_per_dual, "mode": self.mode}

    def state_dict(self) -> dict[str, Any]:
        """All dual state: multipliers, dual optimizer, GradScaler, and the position in the schedule."""
        tensors = saved_state(self.multipliers, self.dual_optimizer, self.scaler)
        return {**self._setup(), "constraint_settings": constraint_settings(self._bindings),
                "multipliers": tensors["multipliers"], "dual_optimizer": tensors["dual_optimizer"],
                "primal_steps": self.primal_steps, "dual_steps": self.dual_steps, "scaler": tensors["scaler"]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores `state_dict()`; raises ValueError, having loaded nothing, if it belongs to a different set-up
        or holds values this stepper could not have written."""
        check_setup(state, self._setup(), constraint_settings(self._bindings), self.scaler is not None)
        check_values(state, self.multipliers)
        restore_state(state, self.multipliers, self.dual_optimizer, self.scaler)
        self.primal_steps = int(state["primal_steps"])
        self.dual_steps = int(state["dual_steps"])
