"""The fairness constraints of the literature, named: each is one `GroupConstraint` or `RateConstraint`
(`constrained.groups`) with its settings, and `parity_difference`, the measure fairlearn's DemographicParity
bounds."""

from __future__ import annotations

from typing import Any, Optional

import torch

from .groups import GroupConstraint, RateConstraint


def demographic_parity(num_groups: int, bound: float, *, name: str = "demographic_parity", temperature: float = 1.0
                       ) -> RateConstraint:
    """|P(score > 0 | A = a) - P(score > 0)| <= bound for every group a."""
    return RateConstraint(num_groups, bound, relative=True, two_sided=True, name=name, temperature=temperature)


def equal_opportunity(num_groups: int, bound: float, *, name: str = "equal_opportunity", temperature: float = 1.0
                      ) -> RateConstraint:
    """|P(score > 0 | A = a, y = 1) - P(score > 0 | y = 1)| <= bound: equal true-positive rates."""
    return RateConstraint(num_groups, bound, relative=True, two_sided=True, condition="positive_label", name=name,
                          temperature=temperature)


def false_positive_rate(bound: float, *, name: str = "false_positive_rate", temperature: float = 1.0
                        ) -> RateConstraint:
    """P(score > 0 | y = 0) <= bound: a Neyman-Pearson bound on the false-positive rate (one group; observe it with
    `observe_scores(scores, labels=labels)`)."""
    return RateConstraint(1, bound, condition="negative_label", name=name, temperature=temperature)


def equal_false_positive_rates(num_groups: int, bound: float, *, name: str = "equal_false_positive_rates",
                               temperature: float = 1.0) -> RateConstraint:
    """|P(score > 0 | A = a, y = 0) - P(score > 0 | y = 0)| <= bound: equalized false-positive rates (predictive
    equality)."""
    return RateConstraint(num_groups, bound, relative=True, two_sided=True, condition="negative_label", name=name,
                          temperature=temperature)


def equalized_odds(num_groups: int, bound: float, *, name: str = "equalized_odds", temperature: float = 1.0
                   ) -> RateConstraint:
    """Equal true- and false-positive rates: the parity constraint within y = 1 and within y = 0."""
    return RateConstraint(num_groups, bound, relative=True, two_sided=True, num_strata=2, condition="label", name=name,
                          temperature=temperature)


def bounded_group_loss(num_groups: int, bound: float, *, name: str = "bounded_group_loss",
                       relax: Optional[Any] = None) -> GroupConstraint:
    """E[loss | A = a] <= bound for every group a (observe it with the per-sample losses); `relax`: each group's
    bound may relax at that price (`constrained.relaxation`)."""
    return GroupConstraint(num_groups, bound, name=name, relax=relax)


def parity_difference(predictions: torch.Tensor, groups: torch.Tensor, num_groups: int) -> float:
    """max_a |E[prediction | A = a] - E[prediction]| over the groups present (fairlearn's DemographicParity
    moment, taken at its worst group)."""
    constraint = GroupConstraint(num_groups, relative=True)
    means, _ = constraint.group_means(predictions.detach().to(torch.float64), groups)
    return float(means.abs().max())
