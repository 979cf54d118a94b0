"""examples/resilient_fairness.py: the resilient relaxation reaches cvxpy's relaxed optimum; the fixed bound cannot."""

from __future__ import annotations

import pytest

from constrained import Quadratic


@pytest.mark.slow
def test_the_relaxation_matches_cvxpy_and_relaxes_the_unmeetable_tertile_alone():
    import resilient_fairness as example

    x, y, groups = example.diabetes_tertiles()
    assert example.own_fit_mse(x, y, groups, 2) > example.BOUND  # no linear model meets the top tertile's bound
    reference = example.cvxpy_reference(x, y, groups, alpha=20.0)
    model, trace, u, failed = example.fit(x, y, groups, 3000, relax=Quadratic(20.0))
    assert failed is None
    assert u == pytest.approx(reference["u"], abs=1e-4) and trace[-1] == pytest.approx(reference["lambda"], abs=2e-3)
    assert u[0] == u[1] == 0.0 and u[2] > 0.03
    assert example.group_mse(model, x, y, groups) == pytest.approx(reference["mse"], abs=1e-3)


def test_under_the_fixed_bound_the_lambdas_grow_without_end():
    import resilient_fairness as example

    x, y, groups = example.diabetes_tertiles()
    _, trace, _, failed = example.fit(x, y, groups, 600, lr=0.003)
    assert failed is None
    top = [t[2] for t in trace]
    assert top[599] - top[399] > 0.9 * (top[399] - top[199]) > 0.5  # still rising at the same pace
