"""From a step's observations to its reports: each constraint's violations and multiplier values joined over the
micro-batches, summarised on the device (read once, when first asked), and the last steps' reports released so a
loop that keeps them holds numbers, not tensors."""

from __future__ import annotations

import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any, Optional

import torch

from ._tensors import converted, detached
from .protocols import Observation
from .report import ConstraintReport, DeferredReports


def summarize(observations: Sequence[Mapping[str, Observation]], values: Sequence[Mapping[str, torch.Tensor]],
              details: Callable[[str, list[Observation], torch.Tensor, torch.Tensor], dict[str, Any]],
              entries: Callable[[str], Optional[torch.Tensor]] = lambda name: None) -> DeferredReports:
    """Each constraint's report over a step's micro-batches, computed when first read.

    Reports hold the true (strict) violations when a proxy was used, and the multiplier values the step used
    (a copy where the value is a multiplier's own parameter, which the dual update changes in place).

    Args:
        observations: per micro-batch, {name: Observation}.
        values: per micro-batch, {name: lambda [n]}.
        details: (name, the name's observations, its joined violations, its joined lambdas) -> extra report
            fields (`ConstraintKind.report_details`, and a relaxation's).
        entries: name -> a copy of every lambda of its lookup multiplier (`Binding.entries`), read only for a
            constraint with no entry in the step, before the dual update moves lambda.
    """
    names = tuple(observations[0])
    violations = {name: joined([_reported_violation(o[name]) for o in observations]) for name in names}
    priced = {name: joined([_owned(v[name]) for v in values]) for name in names}
    kept = {name: [o[name] for o in observations] for name in names}
    tables = {name: entries(name) for name in names if violations[name].numel() == 0}  # shapes only: no sync

    def statistics() -> torch.Tensor:
        parts = [ConstraintReport.statistics(violations[name], priced[name], tables.get(name)) for name in names]
        return torch.cat([converted(part, torch.float32, parts[0].device) for part in parts])

    def compute(numbers: Optional[list[float]]) -> dict[str, ConstraintReport]:
        if numbers is None:
            numbers = statistics().tolist()
        if len(numbers) != 5 * len(names):
            raise ValueError(f"expected {5 * len(names)} report numbers (5 per constraint), got {len(numbers)}")
        reports = {}
        for i, name in enumerate(names):
            mean, worst, satisfied, lambda_mean, lambda_max = numbers[5 * i: 5 * i + 5]
            report = ConstraintReport(mean, worst, satisfied, lambda_mean, lambda_max)
            extra = details(name, kept[name], violations[name], priced[name])
            reports[name] = replace(report, **extra) if extra else report
        return reports

    return DeferredReports(names, compute, statistics)


class RecentReports:
    """The reports of the last two steps; one still held two steps later is computed then (its tensors released),
    so a loop that keeps every report holds numbers, not each step's tensors."""

    def __init__(self) -> None:
        self._recent: list[weakref.ref[DeferredReports]] = []

    def track(self, reports: DeferredReports) -> None:
        """Remembers `reports`; the ones tracked two calls ago are computed if still held."""
        if len(self._recent) == 2:
            kept = self._recent.pop(0)()
            if kept is not None:
                kept.materialize()
        self._recent.append(weakref.ref(reports))


def joined(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """The micro-batches' tensors as one detached flat tensor (no copy, and no op, for a single flat one)."""
    if len(tensors) == 1:
        only = detached(tensors[0])
        return only if only.dim() == 1 else only.reshape(-1)
    return torch.cat([t.detach().reshape(-1) for t in tensors])


def mean_of(scalars: Sequence[torch.Tensor]) -> torch.Tensor:
    """The mean of the micro-batches' scalars, detached (the scalar itself for one)."""
    return scalars[0].detach() if len(scalars) == 1 else joined(scalars).mean()


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
