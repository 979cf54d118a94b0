"""Group (conditional-expectation) constraints and the rate constraints of fairness, as values.

A group constraint bounds a per-group mean rather than every sample:

    E[g(x) | A = a] <= c                    for every group a      (bounded group loss)
    |E[g(x) | A = a] - E[g(x)]| <= eps      for every group a      (demographic parity, relative=True, two_sided=True)

with one multiplier per group (per side). On a batch, the violation of group
a is the mean of g over the batch's members of a, so the dual step of
lambda_a is that mean violation: it does not grow with the batch or with the
group's size, and a group absent from the batch takes no dual step (its
multiplier receives no gradient). The primal Lagrangian adds
sum_a lambda_a (E_batch[g | a] - c).

Rates (the share of positive predictions) are not differentiable. A
constraint may therefore be observed through a proxy: the primal step sees a
smooth surrogate (the mean sigmoid of the score), the dual step the true rate
(cooper's strict violation; Cotter et al.'s proxy Lagrangian).

    dp = demographic_parity(num_groups=2, bound=0.02)
    pd = PrimalDual(optimizer, {dp: dp.multiplier()}, dual_lr=0.5)
    ... closure returns (loss, [dp.observe_scores(scores, groups)])
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Optional, Sequence

import torch

from .validation import check_positive_int
from .constraint import Kind, check_kind
from .protocols import Observation
from .multipliers import LookupMultiplier
from .relaxation import check_relaxation

CONDITIONS = (None, "positive_label", "negative_label", "label")


class GroupMultiplier(LookupMultiplier):
    """One lambda per (side, stratum, group) of a `GroupConstraint`; build it with `constraint.multiplier()`.

    Unlike a per-sample `IndexedMultiplier`, every micro-batch and every DDP rank sees the same groups, so
    their dual gradients are averaged (not summed) across micro-batches and ranks. Absent groups get no
    gradient: with the default SGD dual ascent their lambda does not move.
    """

    per_index = False  # every micro-batch and rank sees the same groups: their gradients are averaged


@dataclass(frozen=True)
class GroupConstraint:
    """E[g | A = a, S = s] (minus E[g | S = s] when `relative`) <= bound for every group a and stratum s.

    Args:
        num_groups: G, groups are ids 0 .. G-1.
        bound: the tolerance c (eps for a relative constraint).
        relative: compare each group's mean with the whole batch's (within its stratum): parity constraints.
        two_sided: also require >= -bound, i.e. |...| <= bound (two multipliers per group).
        num_strata: S, e.g. 2 to condition on the label y in {0, 1} (equalized odds); strata are 0 .. S-1.
        kind: "inequality" or "equality" (mean = bound, multipliers of free sign; not two-sided).
        name: label in reports and state dicts.
        relax: a `constrained.RelaxationCost`: each group may relax its bound by u_a >= 0 at that price
            (`constrained.relaxation`); None: the bounds are hard.
    """

    num_groups: int
    bound: float = 0.0
    relative: bool = False
    two_sided: bool = False
    num_strata: int = 1
    kind: Kind = "inequality"
    summed: ClassVar[bool] = True  # one entry per group, each already a mean: the primal sums them
    name: str = "group"
    relax: Optional[Any] = None

    def __post_init__(self) -> None:
        if self.relax is not None:
            check_relaxation(self.relax, self.name)
        check_positive_int(self.num_groups, "num_groups")
        check_positive_int(self.num_strata, "num_strata")
        check_kind(self.kind)
        if isinstance(self.bound, bool) or not isinstance(self.bound, (int, float)) or not math.isfinite(self.bound):
            raise ValueError(f"bound must be a finite number, got {self.bound!r}")
        if self.kind == "equality" and self.two_sided:
            raise ValueError("an equality constraint is already two-sided; drop two_sided=True")
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"name must be a non-empty string, got {self.name!r}")

    @property
    def num_multipliers(self) -> int:
        """One multiplier per (side, stratum, group)."""
        return self.num_groups * self.num_strata * (2 if self.two_sided else 1)

    def multiplier(self, init: float = 0.0) -> GroupMultiplier:
        """The matching multiplier: one lambda per (side, stratum, group); use the default SGD dual ascent."""
        return GroupMultiplier(self.num_multipliers, init=init)

    def check_multiplier(self, multiplier: Any) -> None:
        """A group constraint is priced by its own `GroupMultiplier` of `num_multipliers` entries."""
        if not isinstance(multiplier, GroupMultiplier) or multiplier.weight.shape[0] != self.num_multipliers:
            raise ValueError(f"group constraint {self.name!r} needs a GroupMultiplier with {self.num_multipliers} "
                             f"entries (constraint.multiplier() builds it), got {type(multiplier).__name__}")

    def report_details(self, observations: Sequence[Observation], violation: torch.Tensor) -> dict[str, Any]:
        """`group_violations`: each multiplier's mean violation over the step (NaN where its group was absent)."""
        sums = torch.zeros(self.num_multipliers, dtype=violation.dtype, device=violation.device)
        counts = torch.zeros_like(sums)
        ids = torch.cat([o.indices.to(violation.device) for o in observations if o.indices is not None])
        sums.index_add_(0, ids, violation)
        counts.index_add_(0, ids, torch.ones_like(violation))
        per_group = torch.where(counts > 0, sums / counts.clamp_min(1), torch.full_like(sums, float("nan")))
        return {"group_violations": tuple(per_group.tolist()), "group_labels": self.multiplier_labels()}

    def multiplier_labels(self) -> tuple[str, ...]:
        """What each multiplier entry prices, in their order: "group<a>" (with strata "stratum<s>/group<a>"),
        prefixed "upper/" or "lower/" when two-sided (the lower side's ids follow all of the upper side's)."""
        cells = [f"group{a}" if self.num_strata == 1 else f"stratum{s}/group{a}"
                 for s in range(self.num_strata) for a in range(self.num_groups)]
        if not self.two_sided:
            return tuple(cells)
        return tuple([f"upper/{c}" for c in cells] + [f"lower/{c}" for c in cells])

    def group_means(self, values: torch.Tensor, groups: torch.Tensor, *, strata: Optional[torch.Tensor] = None,
                    where: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-(stratum, group) means of `values` over the batch, and the cell ids present.

        Args:
            values: [B] per-sample g(x).
            groups: [B] int64 group ids in [0, G).
            strata: optional [B] int64 stratum ids in [0, S) (default: all 0).
            where: optional [B] bool: only these samples count (e.g. y == 1 for equal opportunity).

        Returns:
            (means [n], cells [n]): for each present cell s * G + a, the mean of `values` minus, when
            `relative`, the mean of its stratum; cells absent from the batch are left out.
        """
        values, groups, strata = self._check(values, groups, strata, where)
        means, present = self._cell_means(values[:, None], groups, strata, where)
        return means[:, 0], present

    def _cell_means(self, columns: torch.Tensor, groups: torch.Tensor, strata: torch.Tensor,
                    where: Optional[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """`group_means` of each column of checked [B, k] `columns` in one pass: ([n, k] means, [n] cells)."""
        cells = groups if self.num_strata == 1 else strata * self.num_groups + groups
        if where is not None:
            cells, columns = cells[where], columns[where]
        size = self.num_groups * self.num_strata
        counts = torch.bincount(cells, minlength=size).to(columns.dtype)
        sums = columns.new_zeros(size, columns.shape[1]).index_add(0, cells, columns)
        present = (counts > 0).nonzero().flatten()
        means = sums[present] / counts[present, None]
        if self.relative:
            stratum_counts = counts.view(self.num_strata, self.num_groups).sum(1)
            stratum_sums = sums.view(self.num_strata, self.num_groups, -1).sum(1)
            stratum_means = stratum_sums / stratum_counts.clamp_min(1)[:, None]
            means = means - stratum_means[present // self.num_groups]
        return means, present

    def observe(self, values: torch.Tensor, groups: torch.Tensor, *, proxy: Optional[torch.Tensor] = None,
                strata: Optional[torch.Tensor] = None, where: Optional[torch.Tensor] = None) -> Observation:
        """The constraint on a batch, for `PrimalDual.step`.

        Args:
            values: [B] g(x). Without `proxy` it must carry the gradient the primal step follows.
            groups: as in `group_means`.
            strata: as in `group_means`.
            where: as in `group_means`.
            proxy: optional [B] differentiable surrogate of `values` (e.g. sigmoid(score) for the
                indicator score > 0): the primal step sees the proxy's group means, the dual step the
                true ones.

        Returns:
            An `Observation` with one violation entry per present (side, stratum, group).
        """
        if proxy is None:
            true_means, cells = self.group_means(values, groups, strata=strata, where=where)
            return self._observation(true_means, cells, None, rows=int(values.shape[0]))
        if not isinstance(proxy, torch.Tensor) or proxy.shape != values.shape:
            shape = tuple(proxy.shape) if isinstance(proxy, torch.Tensor) else type(proxy).__name__
            raise ValueError(f"proxy must have the shape of values {tuple(values.shape)}, got {shape}")
        values, groups, strata = self._check(values, groups, strata, where)
        means, cells = self._cell_means(torch.stack([values.detach().to(proxy.dtype), proxy], 1), groups, strata, where)
        return self._observation(means[:, 1], cells, means[:, 0].detach(), rows=int(values.shape[0]))

    def _observation(self, means: torch.Tensor, cells: torch.Tensor, strict: Optional[torch.Tensor], rows: int) -> Observation:
        cells_total = self.num_groups * self.num_strata
        violation = means - self.bound
        strict_violation = None if strict is None else (strict - self.bound).detach()
        ids = cells
        if self.two_sided:  # -mean - bound <= 0 is the lower side, multiplier ids shifted by G * S
            violation = torch.cat([violation, -means - self.bound])
            if strict is not None and strict_violation is not None:
                strict_violation = torch.cat([strict_violation, (-strict - self.bound).detach()])
            ids = torch.cat([cells, cells + cells_total])
        return Observation(self, violation, indices=ids, strict_violation=strict_violation, rows=rows)

    def _check(self, values: torch.Tensor, groups: torch.Tensor, strata: Optional[torch.Tensor],
               where: Optional[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if not isinstance(values, torch.Tensor):
            raise TypeError(f"{self.name}: values must be a float tensor [B], got {type(values).__name__}")
        if not values.is_floating_point():
            raise TypeError(f"{self.name}: values must be a float tensor [B], got dtype {values.dtype} (e.g. an "
                            "indicator: pass values.float())")
        if values.dim() != 1:
            raise ValueError(f"{self.name}: values must be a float tensor [B], got shape {tuple(values.shape)}")
        batch = values.shape[0]
        for label, ids, count in (("groups", groups, self.num_groups), ("strata", strata, self.num_strata)):
            if ids is None:
                continue
            if not isinstance(ids, torch.Tensor) or ids.dtype != torch.long or ids.shape != (batch,):
                raise ValueError(f"{self.name}: {label} must be an int64 tensor of shape [{batch}], got {_described(ids)}")
            if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= count):
                raise ValueError(f"{self.name}: {label} must lie in [0, {count}), got {int(ids.min())}..{int(ids.max())}")
        if where is not None and (not isinstance(where, torch.Tensor) or where.dtype != torch.bool
                                  or where.shape != (batch,)):
            raise ValueError(f"{self.name}: where must be a bool tensor of shape [{batch}], got {_described(where)}")
        if strata is None:
            strata = torch.zeros_like(groups)
        return values, groups.to(values.device), strata.to(values.device)


def _described(value: Any) -> str:
    """A tensor's dtype and shape, or another value's type, for an error message."""
    if isinstance(value, torch.Tensor):
        return f"{value.dtype} of shape {tuple(value.shape)}"
    return type(value).__name__


@dataclass(frozen=True)
class RateConstraint(GroupConstraint):
    """A group constraint on the rate of positive predictions (score > 0), observed through a sigmoid proxy.

    Args (besides `GroupConstraint`'s):
        condition: None (all samples: demographic parity), "positive_label" (only y = 1: true-positive
            rates, equal opportunity), "negative_label" (only y = 0: false-positive rates, a Neyman-Pearson
            bound or their parity) or "label" (one stratum per label y in {0, 1}: equalized odds).
        temperature: the proxy is sigmoid(score / temperature).
    """

    condition: Optional[str] = None
    temperature: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.condition not in CONDITIONS:
            raise ValueError(f"condition must be one of {CONDITIONS}, got {self.condition!r}")
        if (self.condition == "label") != (self.num_strata == 2):
            raise ValueError("condition='label' goes with num_strata=2 (one stratum per label), and only it")
        if not (isinstance(self.temperature, (int, float)) and math.isfinite(self.temperature) and self.temperature > 0):
            raise ValueError(f"temperature must be finite and > 0 (inf would make the proxy constant: no gradient), "
                             f"got {self.temperature}")

    def observe_scores(self, scores: torch.Tensor, groups: Optional[torch.Tensor] = None,
                       labels: Optional[torch.Tensor] = None) -> Observation:
        """Observes the rate of score > 0 per group.

        Args:
            scores: [B] real scores (score > 0 predicts the positive class), carrying the model's gradient.
            groups: [B] int64 group ids; may be omitted when there is one group (e.g. `false_positive_rate`).
            labels: [B] 0/1 labels, needed by the conditional rates (every condition but None).
        """
        if scores.dim() != 1:
            raise ValueError(f"{self.name}: scores must have shape [B], got {tuple(scores.shape)}")
        if groups is None:
            if self.num_groups != 1:
                raise ValueError(f"{self.name}: groups= is needed with {self.num_groups} groups")
            groups = torch.zeros(scores.shape[0], dtype=torch.long, device=scores.device)
        predictions = (scores.detach() > 0).to(scores.dtype)
        proxy = torch.sigmoid(scores / self.temperature)
        if self.condition is None:
            return self.observe(predictions, groups, proxy=proxy)
        if labels is None:
            raise ValueError(f"{self.name}: condition {self.condition!r} needs labels=")
        if self.condition in ("positive_label", "negative_label"):
            wanted = 1 if self.condition == "positive_label" else 0
            return self.observe(predictions, groups, proxy=proxy, where=labels.to(scores.device) == wanted)
        return self.observe(predictions, groups, proxy=proxy, strata=labels.to(scores.device).long())
