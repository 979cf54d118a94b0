"""A constraint kind and a multiplier written in user code (examples/custom_constraint_kind.py) reach the exact
optimum of a convex problem through an unmodified PrimalDual; what is not a protocol implementation is refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from constrained import IndexedMultiplier, MultiplierNetwork, PrimalDual
from constrained.protocols import ConstraintKind, MultiplierKind
from custom_constraint_kind import CVaRConstraint, TailPrice, exact, regression_with_a_minority, solve, tail_mean

cvxpy = pytest.importorskip("cvxpy")


@pytest.mark.parametrize("position", [0.25, 0.5])
def test_a_user_defined_cvar_constraint_reaches_the_exact_optimum(position):
    """The bound lies between the lowest reachable CVaR and least squares' own, so it is active."""
    x, y = regression_with_a_minority()
    alpha = 0.2
    _, _, lowest = exact(x, y, alpha, None)
    least_squares = tail_mean((x @ np.linalg.lstsq(x, y, rcond=None)[0] - y) ** 2, alpha)
    bound = lowest + position * (least_squares - lowest)
    theta, lam = solve(x, y, alpha, bound, steps=2000)
    reference, reference_lambda, reference_value = exact(x, y, alpha, bound)
    assert np.abs(theta - reference).max() < 1e-3
    assert lam == pytest.approx(reference_lambda, rel=0.02)
    losses = (x @ theta - y) ** 2
    assert losses.mean() == pytest.approx(reference_value, rel=1e-4)
    assert tail_mean(losses, alpha) <= bound * (1 + 1e-4)


def test_the_example_classes_implement_the_protocols_and_the_library_classes_too():
    assert isinstance(CVaRConstraint(0.2, 1.0), ConstraintKind) and isinstance(TailPrice(), MultiplierKind)
    from constrained import Constraint, GroupConstraint, ScalarMultiplier, sq_l2

    assert isinstance(Constraint(d=sq_l2), ConstraintKind) and isinstance(GroupConstraint(2, 0.1), ConstraintKind)
    assert isinstance(ScalarMultiplier(), MultiplierKind) and isinstance(MultiplierNetwork(4), MultiplierKind)


def test_what_is_not_a_protocol_implementation_is_refused_by_name():
    theta = torch.nn.Parameter(torch.zeros(2))
    optimizer = torch.optim.SGD([theta], lr=0.1)
    with pytest.raises(TypeError, match="ConstraintKind"):
        PrimalDual(optimizer, {"not a constraint": TailPrice()})
    with pytest.raises(TypeError, match="MultiplierKind"):
        PrimalDual(optimizer, {CVaRConstraint(0.2, 1.0): torch.nn.Linear(2, 1)})
    with pytest.raises(ValueError, match="holds on average only"):  # the kind's own check_multiplier
        PrimalDual(optimizer, {CVaRConstraint(0.2, 1.0): IndexedMultiplier(10)})


@pytest.mark.parametrize("bound,holds", [(1e6, 1.0), (-1.0, 0.0)])
def test_an_aggregate_kind_reports_what_satisfied_means_for_it(bound, holds):
    """The CVaR bound holds on average, so its report_details replaces the per-sample share by whether the
    batch's aggregate holds (1.0 or 0.0): report_details may give any ConstraintReport field."""
    x, y = regression_with_a_minority()
    theta = torch.nn.Parameter(torch.zeros(x.shape[1], dtype=torch.float64))
    tail = CVaRConstraint(0.2, bound)
    pd = PrimalDual(torch.optim.SGD([theta, tail.threshold], lr=0.01), {tail: TailPrice()}, dual_lr=0.1)
    x_t, y_t = torch.tensor(x), torch.tensor(y)

    def closure():
        losses = (x_t @ theta - y_t) ** 2
        return losses.mean(), [tail.observe(losses)]

    report = pd.step(closure).constraints[tail.name]
    assert report.satisfied_fraction == holds
    assert (report.violation_mean <= 0) == bool(holds)
