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

Each `step` takes one primal step on f + E_i[lambda_i.detach() g_i] (the
formulation's primal term); every K-th step also takes one dual ascent step
on E_i[lambda_i g_i.detach()]. "simultaneous" uses the violations of that
K-th step (exactly Algorithm 1 of the paper); "alternating" re-evaluates the
closure after the K-th primal step and uses those fresher violations.
"""

from __future__ import annotations

import dataclasses
import math
import re
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Iterator, Literal, NamedTuple, Optional, Union, cast

import cooper
import torch
from torch import nn

from ._tensors import converted, detached
from .validation import check_nonnegative_finite, check_positive_int
from .constraint import Observation, check_kind
from .formulations import FixedPenalty, Formulation, Lagrangian
from .protocols import ConstraintKind, MultiplierKind
from .report import ConstraintReport, DeferredReports, StepReport

Closure = Callable[[], tuple[torch.Tensor, Union[Observation, Sequence[Observation]]]]
DualOptimizerFactory = Callable[[list[nn.Parameter]], torch.optim.Optimizer]
MODES = ("simultaneous", "alternating")


class PrimalDual:
    """Enforces per-sample constraints on a model trained by `primal_optimizer`.

    Args:
        primal_optimizer: optimizer of the model's parameters (theta).
        constraints: {constraint: multiplier} (multiplier None for `FixedPenalty`); any constraint and
            multiplier implementing `constrained.protocols.ConstraintKind` / `MultiplierKind`,
            or a sequence of constraints when the formulation needs no multiplier.
        formulation: `Lagrangian()` (the default, also for None), `AugmentedLagrangian(c)` or `FixedPenalty(w)`.
        dual_optimizer: a factory params -> optimizer for the multipliers' parameters;
            it must maximise (`maximize=True`). Default: SGD(lr=dual_lr, maximize=True, foreach=True),
            i.e. plain dual ascent as in Algorithm 1. Pass
            ``lambda p: cooper.optim.nuPI(p, lr=..., Kp=..., maximize=True)`` for nuPI.
        dual_lr: learning rate of the default dual optimizer (paper: 5e-4).
        primal_steps_per_dual: K >= 1, primal steps per dual step (paper default 5).
        mode: "simultaneous" (Algorithm 1) or "alternating".
        scaler: a `torch.amp.GradScaler` for fp16 autocast: the primal Lagrangian is scaled before its
            backward pass and the primal optimizer steps through the scaler; when the scaled gradients
            overflow, the primal and the dual updates of that step are both skipped (`StepReport.skipped`).
            Its state is part of `state_dict()`. Not needed for bf16 or fp32.

    A primal optimizer that re-evaluates its objective (`torch.optim.LBFGS`) gets a closure of the primal
    Lagrangian with the multipliers held fixed, so one `step` is a quasi-Newton best response to the current
    multipliers: on small full-batch problems far fewer steps reach the optimum than with a first-order
    optimizer (benchmarks/fairness.py). Combine it with mode="alternating" so that the dual step reads the
    violations at the new primal point.
    """

    def __init__(
        self,
        primal_optimizer: torch.optim.Optimizer,
        constraints: Union[Mapping[ConstraintKind, Optional[MultiplierKind]], Sequence[ConstraintKind]],
        *,
        formulation: Optional[Formulation] = None,
        dual_optimizer: Optional[DualOptimizerFactory] = None,
        dual_lr: float = 5e-4,
        primal_steps_per_dual: int = 1,
        mode: Literal["simultaneous", "alternating"] = "simultaneous",
        scaler: Optional[torch.amp.GradScaler] = None,
    ) -> None:
        if not isinstance(primal_optimizer, torch.optim.Optimizer):
            raise TypeError(f"primal_optimizer must be a torch.optim.Optimizer, got {type(primal_optimizer).__name__}")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if not isinstance(constraints, Mapping):
            constraints = {c: None for c in constraints}
        if not constraints:
            raise ValueError("constraints is empty; use a plain optimizer for unconstrained training")
        if scaler is not None and not isinstance(scaler, torch.amp.GradScaler):
            raise TypeError(f"scaler must be a torch.amp.GradScaler, got {type(scaler).__name__}")
        self.primal_optimizer = primal_optimizer
        self.scaler = scaler
        #: the primal optimizer re-evaluates its objective through a closure (L-BFGS)
        self.primal_reevaluates = isinstance(primal_optimizer, torch.optim.LBFGS)
        if self.primal_reevaluates and scaler is not None:
            raise ValueError("a GradScaler cannot drive torch.optim.LBFGS (it re-evaluates the loss inside its step); "
                             "use bf16 or fp32 with LBFGS")
        self.formulation = formulation if formulation is not None else Lagrangian()
        self.primal_steps_per_dual = check_positive_int(primal_steps_per_dual, "primal_steps_per_dual")
        self.mode = mode
        self.primal_steps = 0
        self.dual_steps = 0
        self._dual_seconds = 0.0  # wall time of the dual work in the current step
        # the reports the last two steps returned; one still alive two steps later is computed then (its tensors
        # released), so a loop that keeps every report holds numbers, not each step's tensors
        self._recent_reports: list[weakref.ref[DeferredReports]] = []
        self._bindings: dict[str, _Binding] = {}
        for constraint, multiplier in constraints.items():
            self._bind(constraint, multiplier)
        self.multipliers = nn.ModuleDict(
            {name: cast(nn.Module, b.multiplier) for name, b in self._bindings.items() if b.multiplier is not None}
        )
        if dual_optimizer is None or dual_lr is not None:
            dual_lr = check_nonnegative_finite(dual_lr, "dual_lr")
        self.dual_optimizer = self._build_dual_optimizer(dual_optimizer, dual_lr)

    def _bind(self, constraint: ConstraintKind, multiplier: Optional[MultiplierKind]) -> None:
        if not isinstance(constraint, ConstraintKind):
            raise TypeError(f"constraints keys must implement constrained.protocols.ConstraintKind (name, kind, "
                            f"summed, check_multiplier, report_details), got {type(constraint).__name__}")
        check_kind(constraint.kind)
        if multiplier is not None and not (isinstance(multiplier, MultiplierKind)
                                           and isinstance(multiplier, cooper.multipliers.Multiplier)):
            raise TypeError(f"constraint {constraint.name!r}: multiplier must be a cooper multiplier implementing "
                            "constrained.protocols.MultiplierKind (averages_constraint, per_index, free_sign, "
                            f"features_of), got {type(multiplier).__name__}")
        equality = constraint.kind == "equality"
        if equality and multiplier is not None and not multiplier.free_sign:
            raise ValueError(f"constraint {constraint.name!r} is an equality: its multiplier must have a free sign "
                             f"(e.g. a ScalarMultiplier or IndexedMultiplier), not {type(multiplier).__name__} "
                             "(softplus multipliers are >= 0)")
        if multiplier is not None:
            constraint.check_multiplier(multiplier)
        if constraint.name in self._bindings:
            raise ValueError(f"two constraints share the name {constraint.name!r}; give each a unique name=")
        shared = [name for name, b in self._bindings.items() if multiplier is not None and b.multiplier is multiplier]
        if shared:
            raise ValueError(f"constraint {constraint.name!r} is given the multiplier object of {shared[0]!r}: each "
                             "constraint needs its own (one dual step would move it twice, for two prices)")
        if self.formulation.needs_multiplier and multiplier is None:
            raise ValueError(f"constraint {constraint.name!r}: {type(self.formulation).__name__} needs a multiplier")
        if not self.formulation.needs_multiplier and multiplier is not None:
            raise ValueError(f"constraint {constraint.name!r}: {type(self.formulation).__name__} takes no multiplier")
        if multiplier is not None:  # cooper's multipliers project onto lambda >= 0 by their constraint's type
            cast(cooper.multipliers.Multiplier, multiplier).set_constraint_type(
                cooper.ConstraintType.EQUALITY if equality else cooper.ConstraintType.INEQUALITY)
        self._bindings[constraint.name] = _Binding(
            constraint=constraint,
            multiplier=multiplier,
            equality=equality,
            summed=bool(constraint.summed),
            averages=multiplier is not None and bool(multiplier.averages_constraint),
            per_index=multiplier is not None and bool(multiplier.per_index),
        )

    def _build_dual_optimizer(
        self, factory: Optional[DualOptimizerFactory], lr: float
    ) -> Optional[torch.optim.Optimizer]:
        params = list(self.multipliers.parameters())
        if not params:
            if factory is not None:
                raise ValueError(f"{type(self.formulation).__name__} has no dual variables; drop dual_optimizer")
            return None
        optimizer: torch.optim.Optimizer
        if factory is None:  # multi-tensor: one kernel launch per dual step instead of one per parameter
            optimizer = torch.optim.SGD(params, lr=lr, maximize=True, foreach=True)
        else:
            optimizer = factory(params)
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"dual_optimizer must return a torch.optim.Optimizer, got {type(optimizer).__name__}")
        for group in optimizer.param_groups:
            if not group.get("maximize", False):
                raise ValueError("the dual optimizer must ascend: build it with maximize=True")
        return optimizer

    # ------------------------------------------------------------------ step

    def step(self, closure: Closure) -> StepReport:
        """One primal step, plus a dual step when K primal steps have been taken.

        Args:
            closure: evaluates the model and returns (loss, observations):
                a scalar objective f and one `Observation` per constraint.

        Returns:
            A `StepReport` of the observations the last update used.
        """
        return self.step_accumulated([closure])

    def step_accumulated(self, closures: Sequence[Closure]) -> StepReport:
        """Like `step`, with gradients accumulated over micro-batches before the updates.

        Each closure evaluates one micro-batch (all of the same number of rows, `Observation.batch_size`);
        the primal and dual Lagrangians are averaged over them, so the update equals `step` on the
        whole batch while only one micro-batch's activations are alive at a time. A group constraint's
        terms are averages of each micro-batch's group means: equal to the whole batch's when every
        micro-batch holds each group in the same proportion.

        Args:
            closures: one closure per micro-batch, as for `step`.

        Returns:
            A `StepReport` over all micro-batches.
        """
        if not closures:
            raise ValueError("closures is empty")
        weight = 1.0 / len(closures)
        self._dual_seconds = 0.0
        dual_due = self._dual_due()
        dual_now = dual_due and self.mode == "simultaneous"
        self.primal_optimizer.zero_grad(set_to_none=True)
        if dual_now and self.dual_optimizer is not None:
            self.dual_optimizer.zero_grad(set_to_none=True)
        losses, lagrangians, seen, sizes = [], [], [], []
        for closure in closures:
            loss, observations, priced = self._evaluate(closure, require_grad=True)
            sizes.append(next(iter(observations.values())).batch_size)  # data rows (not a group constraint's entries)
            if sizes[-1] != sizes[0]:
                raise ValueError(f"micro-batches must all have the same number of rows for step_accumulated to "
                                 f"equal the full-batch update; got {sizes} rows so far (closure {len(sizes) - 1})")
            values = self._multiplier_values(priced)  # each multiplier evaluated once, for both terms
            lagrangian = self._primal_lagrangian_of(loss, priced, values)
            scaled = weight * lagrangian
            if self.scaler is not None:
                scaled = self.scaler.scale(scaled)
            roots = [scaled]
            if dual_now:  # one backward pass for both: the primal term holds lambda fixed, the dual term g
                with self._timed_dual():
                    dual_total = self._dual_lagrangian_of(priced, values, weight)
                if dual_total is not None:
                    roots.append(dual_total)
            torch.autograd.backward(roots)
            losses.append(loss.detach())
            lagrangians.append(lagrangian.detach())
            seen.append((observations, values))
        loss_value, lagrangian_value, reports = self._summary(seen, losses, lagrangians)  # one device sync
        if not math.isfinite(lagrangian_value):
            self.primal_optimizer.zero_grad(set_to_none=True)
            if self.dual_optimizer is not None:
                self.dual_optimizer.zero_grad(set_to_none=True)
            raise FloatingPointError(f"the Lagrangian is {lagrangian_value}; stopping before the update")
        skipped = self._primal_step(closures, weight)
        self.primal_steps += 1
        if dual_due and not skipped:
            if self.mode == "alternating":
                if self.dual_optimizer is not None:
                    self.dual_optimizer.zero_grad(set_to_none=True)
                seen, losses = [], []
                for closure in closures:
                    with torch.no_grad():
                        loss, observations, priced = self._evaluate(closure)
                    seen.append((observations, self._dual_backward(priced, weight)))
                    losses.append(loss.detach())
                loss_value, _, reports = self._summary(seen, losses, lagrangians)
            self._dual_step()
        elif dual_now and self.dual_optimizer is not None:
            self.dual_optimizer.zero_grad(set_to_none=True)  # overflowed: this step's dual gradients are dropped too
        self._track(reports)
        return StepReport(
            loss=loss_value,
            lagrangian=lagrangian_value,
            constraints=reports,
            dual_updated=dual_due and not skipped,
            primal_steps=self.primal_steps,
            dual_steps=self.dual_steps,
            dual_seconds=self._dual_seconds,
            skipped=skipped,
            after_update=dual_due and not skipped and self.mode == "alternating",
        )

    def _dual_due(self) -> bool:
        """Whether the next step also updates the dual (every K-th primal step)."""
        return (self.primal_steps + 1) % self.primal_steps_per_dual == 0

    @property
    def next_report_after_update(self) -> bool:
        """Whether the next step's report will describe the iterate after its update (alternating mode, on a
        dual step; `StepReport.after_update`): a caller keeping the evaluated iterate snapshots after it."""
        return self.mode == "alternating" and self._dual_due()

    def _primal_step(self, closures: Sequence[Closure], weight: float) -> bool:
        """Steps the primal optimizer (through the scaler, if any); True when the scaler skipped the step
        because the scaled gradients were not finite (it then lowers its scale)."""
        if self.primal_reevaluates:
            self.primal_optimizer.step(lambda: float(self._primal_lagrangian(closures, weight)))
            return False
        if self.scaler is None:
            self._check_primal_gradients()
            self.primal_optimizer.step()
            return False
        scale = self.scaler.get_scale()
        self.scaler.step(self.primal_optimizer)
        self.scaler.update()
        return self.scaler.get_scale() < scale

    def _check_primal_gradients(self) -> None:
        """Stops before the update when a primal gradient is not finite although the Lagrangian is (an overflow
        inside backward): stepping would put inf/NaN into the weights, seen only at the next step. One sync."""
        grads = [p.grad for group in self.primal_optimizer.param_groups for p in group["params"] if p.grad is not None]
        grads = [g.coalesce().values() if g.is_sparse else g for g in grads]
        if grads and not bool(torch.stack(torch._foreach_norm(grads)).isfinite().all()):
            self.primal_optimizer.zero_grad(set_to_none=True)
            if self.dual_optimizer is not None:
                self.dual_optimizer.zero_grad(set_to_none=True)
            raise FloatingPointError("a primal gradient is not finite although the Lagrangian is; stopping before "
                                     "the update (the weights are unchanged)")

    def _primal_lagrangian(self, closures: Sequence[Closure], weight: float) -> torch.Tensor:
        """Re-evaluates the primal Lagrangian (multipliers fixed) with fresh gradients: the objective an L-BFGS
        step minimises."""
        self.primal_optimizer.zero_grad(set_to_none=True)
        total = torch.zeros(())
        for closure in closures:
            loss, _, priced = self._evaluate(closure, require_grad=True)
            lagrangian = self._primal_lagrangian_of(loss, priced, self._multiplier_values(priced))
            torch.autograd.backward(weight * lagrangian)
            total = total + weight * lagrangian.detach().cpu()
        return total

    def _evaluate(self, closure: Closure, require_grad: bool = False
                  ) -> tuple[torch.Tensor, dict[str, Observation], dict[str, _Priced]]:
        result = closure()
        if not (isinstance(result, tuple) and len(result) == 2):
            raise TypeError("closure must return (loss, observations)")
        loss, observations = result
        if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
            shape = tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
            raise ValueError(f"closure's loss must be a scalar tensor, got {shape}")
        if isinstance(observations, Observation):
            observations = [observations]
        by_name: dict[str, Observation] = {}
        for observation in observations:
            if not isinstance(observation, Observation):
                raise TypeError(f"closure must return Observations, got {type(observation).__name__}")
            name = observation.constraint.name
            binding = self._bindings.get(name)
            if binding is None or (binding.constraint is not observation.constraint
                                   and binding.constraint != observation.constraint):
                raise ValueError(f"closure observed constraint {name!r}, which this PrimalDual does not enforce")
            if name in by_name:
                raise ValueError(f"closure observed constraint {name!r} twice")
            strict = observation.strict_violation
            if strict is not None and not bool(torch.isfinite(strict).all()):
                raise FloatingPointError(f"constraint {name!r}: its strict (true) violation is not finite; stopping "
                                         "before any update (a NaN would silently become a multiplier)")
            if require_grad and torch.is_grad_enabled() and not observation.violation.requires_grad:
                raise ValueError(f"constraint {name!r}: its violation carries no gradient (was it computed from a "
                                 "detached output or under torch.no_grad()?); the primal step could not enforce it")
            by_name[name] = observation
        if len(by_name) != len(self._bindings):
            raise ValueError(f"closure did not observe constraint(s) {sorted(set(self._bindings) - set(by_name))}")
        return loss, by_name, {name: self._priced(obs) for name, obs in by_name.items()}

    def _priced(self, observation: Observation) -> _Priced:
        """What the Lagrangian terms read of an observation: an averaging multiplier sees the mean violation; a
        strict violation (proxy constraints) goes to the dual side only."""
        binding = self._bindings[observation.constraint.name]
        g, strict = observation.violation, observation.strict_violation
        if binding.averages:
            g = g.mean().unsqueeze(0)
            return _Priced(g, g if strict is None else strict.mean().unsqueeze(0), None)
        features = None if binding.multiplier is None else binding.multiplier.features_of(observation)
        return _Priced(g, g if strict is None else strict, features)

    def _multiplier_values(self, priced: dict[str, _Priced]) -> dict[str, torch.Tensor]:
        """{name: lambda [n]} of this evaluation (a fixed penalty's weight, [1], for reports)."""
        values = {}
        for name, entry in priced.items():
            multiplier = cast(Optional[cooper.multipliers.Multiplier], self._bindings[name].multiplier)
            if multiplier is None:
                assert isinstance(self.formulation, FixedPenalty)
                values[name] = torch.full((1,), self.formulation.weight, device=entry.violation.device)
                continue
            value = multiplier(entry.features) if multiplier.expects_constraint_features else multiplier()
            if value.dim() == 0:
                value = value.unsqueeze(0)
            if value.shape != entry.violation.shape:
                raise ValueError(f"constraint {name!r}: its multiplier gives lambda of shape {tuple(value.shape)} for "
                                 f"violations of shape {tuple(entry.violation.shape)}; they must match")
            values[name] = value
        return values

    def _scale(self, binding: _Binding, entries: int, primal_or_dual: Literal["primal", "dual"]) -> float:
        """Terms are sums over entries; per-sample constraints read them as expectations over the batch (1/B).
        The dual term of a per-index multiplier is not averaged: each entry owns one sample."""
        summed = binding.summed or (primal_or_dual == "dual" and binding.per_index)
        return 1.0 if summed else 1.0 / entries

    def _primal_lagrangian_of(self, loss: torch.Tensor, priced: dict[str, _Priced],
                              values: dict[str, torch.Tensor]) -> torch.Tensor:
        """f + the constraints' primal terms (multipliers held fixed), scalar."""
        lagrangian = loss
        for name, entry in priced.items():
            binding = self._bindings[name]
            term = self.formulation.primal_term(None if binding.multiplier is None else values[name],
                                                entry.violation, binding.equality)
            scale = self._scale(binding, entry.violation.shape[0], "primal")
            lagrangian = torch.add(lagrangian, term, alpha=scale) if scale != 1.0 else lagrangian + term  # one op
        return lagrangian

    def _dual_lagrangian_of(self, priced: dict[str, _Priced], values: dict[str, torch.Tensor], weight: float
                            ) -> Optional[torch.Tensor]:
        """weight x the dual Lagrangian (to ascend), scalar; None without dual variables."""
        if self.dual_optimizer is None:
            return None
        total: Optional[torch.Tensor] = None
        for name, entry in priced.items():
            binding = self._bindings[name]
            term = self.formulation.dual_term(values[name], entry.dual_violation)
            if term is None:
                continue
            scale = self._scale(binding, entry.violation.shape[0], "dual")
            if not binding.per_index:  # an index's entry owns its sample's violation: no micro-batch weight
                scale *= weight
            if total is None:
                total = term * scale if scale != 1.0 else term
            else:
                total = torch.add(total, term, alpha=scale)
        return total

    def _summary(self, seen: Sequence[tuple[dict[str, Observation], dict[str, torch.Tensor]]],
                 losses: Sequence[torch.Tensor], lagrangians: Sequence[torch.Tensor]
                 ) -> tuple[float, float, DeferredReports]:
        """The mean loss and the mean Lagrangian over the micro-batches (read from the device now: the finiteness
        check needs them), and each constraint's report, computed when first read. Reports hold the true
        (strict) violations when a proxy was used; a group constraint adds each multiplier's mean violation (NaN
        where its group was absent)."""
        if len(losses) == 1:  # one micro-batch: the scalars themselves (each op here costs microseconds per step)
            loss_value, lagrangian_value = torch.stack([losses[0], lagrangians[0]]).tolist()
        else:
            loss_value, lagrangian_value = torch.stack([_joined(losses).mean(), _joined(lagrangians).mean()]).tolist()
        names = tuple(seen[0][0])
        violations = {name: _joined([_reported_violation(o[name]) for o, _ in seen]) for name in names}
        # a multiplier's value may share storage with its parameters (a scalar's lambda): keep the value this
        # step used, not what the dual update writes there
        values = {name: _joined([_owned(v[name]) for _, v in seen]) for name in names}
        observations = {name: [o[name] for o, _ in seen] for name in names}
        bindings = self._bindings

        def compute() -> dict[str, ConstraintReport]:
            parts = [ConstraintReport.statistics(violations[name], values[name]) for name in names]
            device = parts[0].device
            numbers = torch.cat([converted(part, torch.float32, device) for part in parts]).tolist()
            reports = {}
            for i, name in enumerate(names):
                report = ConstraintReport(*numbers[5 * i: 5 * i + 5])
                details = bindings[name].constraint.report_details(observations[name], violations[name])
                reports[name] = dataclasses.replace(report, **details) if details else report
            return reports

        return loss_value, lagrangian_value, DeferredReports(names, compute)

    def _track(self, reports: DeferredReports) -> None:
        """Remembers the reports a step returned; the ones returned two steps ago are computed if still held."""
        if len(self._recent_reports) == 2:
            kept = self._recent_reports.pop(0)()
            if kept is not None:
                kept.materialize()
        self._recent_reports.append(weakref.ref(reports))

    def _dual_backward(self, priced: dict[str, _Priced], weight: float = 1.0) -> dict[str, torch.Tensor]:
        """Accumulates weight x the dual Lagrangian's gradient; returns the multiplier values."""
        with self._timed_dual():
            values = self._multiplier_values(priced)
            total = self._dual_lagrangian_of(priced, values, weight)
            if total is not None:
                torch.autograd.backward(total)
            return values

    @contextmanager
    def _timed_dual(self) -> Iterator[None]:
        """Adds the enclosed wall time to this step's `dual_seconds` (waiting for the GPU, when the duals live there)."""
        cuda = torch.cuda.is_initialized() and any(  # type: ignore[no-untyped-call]
            p.is_cuda for p in self.multipliers.parameters())
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        try:
            yield
        finally:
            if cuda:
                torch.cuda.synchronize()
            self._dual_seconds += time.perf_counter() - start

    def _dual_step(self) -> None:
        with self._timed_dual():
            if self.dual_optimizer is not None:
                _average_dual_gradients_across_ranks(self.multipliers)
                self.dual_optimizer.step()
                for multiplier in self.multipliers.values():
                    cast(cooper.multipliers.Multiplier, multiplier).post_step_()
        self.dual_steps += 1

    # ------------------------------------------------------------ state

    def multiplier(self, name: str) -> Optional[MultiplierKind]:
        """The multiplier bound to constraint `name` (None under a fixed penalty)."""
        if name not in self._bindings:
            raise KeyError(f"no constraint named {name!r}; have {sorted(self._bindings)}")
        return self._bindings[name].multiplier

    def state_dict(self) -> dict[str, Any]:
        """All dual state: multipliers, dual optimizer, and the position in the K:1 schedule."""
        return {
            "constraints": sorted(self._bindings),
            "constraint_settings": self._constraint_settings(),
            "formulation": repr(self.formulation),
            "primal_steps_per_dual": self.primal_steps_per_dual,
            "mode": self.mode,
            "multipliers": self.multipliers.state_dict(),
            "dual_optimizer": None if self.dual_optimizer is None else self.dual_optimizer.state_dict(),
            "primal_steps": self.primal_steps,
            "dual_steps": self.dual_steps,
            "scaler": None if self.scaler is None else self.scaler.state_dict(),
        }

    def _constraint_settings(self) -> dict[str, str]:
        """{name: the constraint's description} (its repr without memory addresses): what a multiplier's values mean."""
        return {name: re.sub(r" at 0x[0-9a-fA-F]+", "", repr(binding.constraint))
                for name, binding in sorted(self._bindings.items())}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores `state_dict()`; raises ValueError if it belongs to a different set-up."""
        if not isinstance(state, dict) or "multipliers" not in state:
            raise ValueError("not a PrimalDual state dict (no 'multipliers' entry)")
        for key, mine in (
            ("constraints", sorted(self._bindings)),
            ("formulation", repr(self.formulation)),
            ("primal_steps_per_dual", self.primal_steps_per_dual),
            ("mode", self.mode),
        ):
            if state.get(key) != mine:
                raise ValueError(f"state dict has {key}={state.get(key)!r}, this PrimalDual has {mine!r}")
        saved_settings = state.get("constraint_settings")  # absent in states saved before it was recorded
        if saved_settings is not None and saved_settings != self._constraint_settings():
            changed = [f"{name}: saved {saved_settings.get(name)} vs now {mine}"
                       for name, mine in self._constraint_settings().items() if saved_settings.get(name) != mine]
            raise ValueError("state dict belongs to other constraint settings (its multipliers price other bounds): "
                             + "; ".join(changed))
        if (state.get("scaler") is None) != (self.scaler is None):
            raise ValueError("state dict was saved " + ("without" if state.get("scaler") is None else "with")
                             + " a GradScaler, this PrimalDual has " + ("one" if self.scaler is not None else "none"))
        self._check_saved_values(state)  # everything is checked before anything is loaded
        try:
            self.multipliers.load_state_dict(state["multipliers"])
        except RuntimeError as error:  # torch's shape/key mismatch report, named as what it means here
            raise ValueError(f"state dict's multipliers do not fit this PrimalDual's (another multiplier kind or "
                             f"size?): {error}") from None
        if self.dual_optimizer is not None:
            self.dual_optimizer.load_state_dict(state["dual_optimizer"])
        if self.scaler is not None:
            self.scaler.load_state_dict(state["scaler"])
        self.primal_steps = int(state["primal_steps"])
        self.dual_steps = int(state["dual_steps"])

    def _check_saved_values(self, state: dict[str, Any]) -> None:
        """Refuses step counts that are not non-negative integers, and multipliers that are not finite or (for an
        inequality's explicit multiplier, kept >= 0 by projection) negative: naming the entry."""
        for key in ("primal_steps", "dual_steps"):
            value = state.get(key)
            number = value.item() if isinstance(value, torch.Tensor) and value.numel() == 1 else value
            if isinstance(number, bool) or not isinstance(number, int) or number < 0:
                raise ValueError(f"state dict's {key} must be a non-negative integer, got {value!r}")
        saved = state["multipliers"]
        if not isinstance(saved, dict):
            raise ValueError(f"state dict's multipliers must be a state dict, got {type(saved).__name__}")
        for key, tensor in saved.items():
            if isinstance(tensor, torch.Tensor) and tensor.is_floating_point() and not bool(tensor.isfinite().all()):
                raise ValueError(f"state dict's multiplier entry {key!r} is not finite")
        for name, binding in self._bindings.items():
            weight = saved.get(f"{name}.weight")
            explicit = isinstance(binding.multiplier, cooper.multipliers.ExplicitMultiplier)
            if explicit and not binding.equality and isinstance(weight, torch.Tensor) and bool((weight < 0).any()):
                raise ValueError(f"state dict's multipliers of inequality {name!r} hold negative values "
                                 f"(min {float(weight.min()):.4g}); a multiplier of an inequality is >= 0")


def _reported_violation(observation: Observation) -> torch.Tensor:
    """The violation a report states: the true (strict) one when the dual step read a proxy."""
    return observation.violation if observation.strict_violation is None else observation.strict_violation


def _owned(value: torch.Tensor) -> torch.Tensor:
    """A multiplier's value detached from its parameters' storage: a copy when it is a leaf tensor (a parameter,
    which an in-place dual update would change) or a view of one; the tensor itself when an op produced it."""
    storage = value._base if value._is_view() and value._base is not None else value
    if storage.grad_fn is None:
        return value.detach().clone()
    return value


def _joined(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """The micro-batches' tensors as one detached flat tensor (no copy, and no op, for a single flat one)."""
    if len(tensors) == 1:
        only = detached(tensors[0])
        return only if only.dim() == 1 else only.reshape(-1)
    return torch.cat([t.detach().reshape(-1) for t in tensors])


@dataclasses.dataclass(frozen=True)
class _Binding:
    """A constraint bound to its multiplier, with the protocol's flags read once."""

    constraint: ConstraintKind
    multiplier: Optional[MultiplierKind]
    equality: bool
    summed: bool
    averages: bool
    per_index: bool


class _Priced(NamedTuple):
    """One evaluation of one constraint as the Lagrangian terms read it."""

    violation: torch.Tensor  #: [n] the primal term's violations (carry the model's gradient)
    dual_violation: torch.Tensor  #: [n] what the dual step ascends on (the strict violation, if any)
    features: Optional[torch.Tensor]  #: the multiplier's input ([n, F] features, [n] indices) or None


def _average_dual_gradients_across_ranks(multipliers: nn.ModuleDict) -> None:
    """Under torch.distributed, makes every rank take the same dual step.

    Shared-parameter multipliers average their gradients (each rank saw an
    equal shard of the batch); per-index multipliers sum theirs (each index
    lives on one rank).
    """
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return
    world = torch.distributed.get_world_size()
    if world == 1:
        return
    for multiplier in multipliers.values():
        for param in multiplier.parameters():
            if param.grad is None:
                param.grad = torch.zeros_like(param)
            grad = param.grad.to_dense() if param.grad.is_sparse else param.grad
            torch.distributed.all_reduce(grad)
            if not multiplier.per_index:
                grad /= world
            param.grad = grad
