"""Resilient constraints (constrained.relaxation): the relaxed optimum cvxpy finds is the one PrimalDual reaches,
for a per-sample and a group problem; the quadratic cost is leaky dual ascent step for step; a user's own cost
class trains; the linear cost caps lambda at its price; relaxed runs resume exactly."""

from __future__ import annotations

import copy

import cvxpy as cp
import numpy as np
import pytest
import torch

from constrained import (Constraint, FixedMargin, GroupConstraint, Lagrangian, Linear, NormMargin, PrimalDual,
                         Quadratic, RelaxationCost, ScalarMultiplier, sq_l2)
from constrained.formulations import AugmentedLagrangian, FixedPenalty

from test_protocols import RHO, PerSampleTable, ball_problem


def cvxpy_ball(cost: str, weight: float):
    """min sum_i ||theta_i - a_i||^2 + h(u_i) s.t. ||theta_i - c_i||^2 - rho ||c_i||^2 <= u_i, u >= 0: the
    per-sample problem PrimalDual's expectation form has the same KKT points for (lambda_i = h'(u_i))."""
    a, c, _, _ = ball_problem()
    a, c = a.numpy(), c.numpy()
    theta, u = cp.Variable(a.shape), cp.Variable(a.shape[0], nonneg=True)
    price = {"quadratic": lambda v: weight / 2 * cp.sum_squares(v), "linear": lambda v: weight * cp.sum(v),
             "quartic": lambda v: weight / 4 * cp.sum(cp.power(v, 4))}[cost]
    bounds = [cp.sum_squares(theta[i] - c[i]) - RHO * float(np.sum(c[i] ** 2)) <= u[i] for i in range(a.shape[0])]
    problem = cp.Problem(cp.Minimize(cp.sum_squares(theta - a) + price(u)), bounds)
    if cost != "quadratic":  # a power cone, or a degenerate dual CLARABEL stops on: SCS, at tight tolerances
        problem.solve(solver=cp.SCS, eps_abs=1e-10, eps_rel=1e-10, max_iters=200_000)
    else:
        problem.solve(solver=cp.CLARABEL)
    return (torch.tensor(theta.value), torch.tensor(np.array([b.dual_value for b in bounds]).reshape(-1)),
            torch.tensor(u.value))


def train_ball(relax, steps: int = 4000, multiplier=None, formulation=None):
    a, c, _, _ = ball_problem()
    theta = torch.nn.Parameter(a.clone())
    constraint = Constraint(d=sq_l2, margin=NormMargin(RHO), name="ball", relax=relax)
    multiplier = multiplier or PerSampleTable(a.shape[0])
    pd = PrimalDual(torch.optim.SGD([theta], lr=0.5), {constraint: multiplier}, dual_lr=0.1,
                    **({} if formulation is None else {"formulation": formulation}))
    indices = torch.arange(a.shape[0])

    def closure():
        return (theta - a).pow(2).sum(dim=1).mean(), [constraint.observe(theta, c, indices=indices)]

    report = None
    for _ in range(steps):
        report = pd.step(closure)
    return theta.detach(), multiplier.table.detach(), report.constraints["ball"], c


@pytest.mark.parametrize("alpha", [0.5, 2.0])
def test_a_per_sample_quadratic_relaxation_reaches_cvxpys_relaxed_optimum(alpha):
    theta_ref, lambda_ref, u_ref = cvxpy_ball("quadratic", alpha)
    theta, lam, report, c = train_ball(Quadratic(alpha))
    assert torch.allclose(theta, theta_ref, atol=1e-4)
    assert torch.allclose(lam, lambda_ref, atol=1e-3)
    assert torch.allclose(lam / alpha, u_ref, atol=1e-3)  # u(x) = lambda(x) / alpha
    assert report.relaxation_max == pytest.approx(float(u_ref.max()), abs=1e-3)
    assert report.relaxation_mean == pytest.approx(float(u_ref.mean()), abs=1e-3)
    g_ref = (theta_ref - c).pow(2).sum(dim=1) - RHO * c.pow(2).sum(dim=1)
    assert report.relaxed_violation_mean == pytest.approx(float((g_ref - u_ref).mean()), abs=1e-3)
    assert float((g_ref - u_ref).max()) == pytest.approx(0.0, abs=1e-6)  # the relaxed bounds hold, active ones exactly
    hard_lambda = ball_problem()[3]
    assert (lam <= hard_lambda + 1e-9).all() and (u_ref[hard_lambda > 0] > 1e-3).all()  # relaxed where violated


def test_the_augmented_lagrangian_penalises_the_relaxed_violation_and_reaches_the_same_optimum():
    """Its penalty acts on g - u*(lambda): the relaxed problem's KKT point is cvxpy's, as under the Lagrangian. A
    penalty on g itself would keep pushing a relaxed sample back towards the hard bound."""
    alpha = 2.0
    theta_ref, lambda_ref, u_ref = cvxpy_ball("quadratic", alpha)
    theta, lam, report, _ = train_ball(Quadratic(alpha), formulation=AugmentedLagrangian(0.1))
    assert torch.allclose(theta, theta_ref, atol=1e-4)
    assert torch.allclose(lam, lambda_ref, atol=1e-3)
    assert report.relaxation_max == pytest.approx(float(u_ref.max()), abs=1e-3)


class Quartic:
    """A user's cost, derived from no library class: h(u) = w u^4 / 4, so u* = (lambda / w)^(1/3)."""

    def __init__(self, w: float) -> None:
        self.w = w

    def relaxation(self, multiplier, violation):
        return (multiplier.clamp_min(0) / self.w) ** (1 / 3)

    def cost(self, relaxation):
        return self.w / 4 * relaxation**4

    def price(self, multiplier):
        return multiplier


def test_a_user_written_cost_relaxes_as_cvxpy_predicts():
    assert Quartic.__mro__ == (Quartic, object) and isinstance(Quartic(1.0), RelaxationCost)
    theta_ref, lambda_ref, u_ref = cvxpy_ball("quartic", 3.0)
    theta, lam, report, _ = train_ball(Quartic(3.0))
    assert torch.allclose(theta, theta_ref, atol=1e-4)
    assert torch.allclose(lam, lambda_ref, atol=1e-3)
    assert report.relaxation_max == pytest.approx(float(u_ref.max()), abs=1e-3)


def test_the_linear_cost_caps_lambda_at_its_price_an_exact_penalty():
    beta = 0.5
    theta_ref, lambda_ref, u_ref = cvxpy_ball("linear", beta)
    theta, lam, report, _ = train_ball(Linear(beta), steps=6000)
    assert torch.allclose(theta, theta_ref, atol=1e-4)
    assert torch.allclose(lam.clamp(max=beta), lambda_ref, atol=1e-3)  # what the terms read: min(lambda, beta)
    assert report.relaxation_max == pytest.approx(float(u_ref.max()), abs=1e-3)
    assert lambda_ref.max() <= beta + 1e-6


def test_a_group_relaxation_reaches_cvxpys_optimum():
    """min (theta - 3)^2 + sum_a alpha/2 u_a^2 s.t. theta m_a - c_a <= u_a: the bound of group 0 cannot be met
    near theta = 3; the relaxation takes u_0 = lambda_0 / alpha and leaves group 1 (slack) alone."""
    alpha, bounds = 4.0, torch.tensor([0.5, 4.0], dtype=torch.float64)
    x = torch.tensor([1.0, 2.0, 1.0, 0.5, 1.5], dtype=torch.float64)
    groups = torch.tensor([0, 0, 0, 1, 1])
    means = torch.stack([x[groups == a].mean() for a in (0, 1)])
    t, u = cp.Variable(), cp.Variable(2, nonneg=True)
    rows = [t * float(means[a]) - float(bounds[a]) <= u[a] for a in (0, 1)]
    cp.Problem(cp.Minimize(cp.square(t - 3) + alpha / 2 * cp.sum_squares(u)), rows).solve(solver=cp.CLARABEL)
    constraint = GroupConstraint(num_groups=2, bound=0.0, name="g", relax=Quadratic(alpha))
    theta = torch.nn.Parameter(torch.zeros((), dtype=torch.float64))
    multiplier = constraint.multiplier().double()
    pd = PrimalDual(torch.optim.SGD([theta], lr=0.1), {constraint: multiplier}, dual_lr=0.5)

    def closure():
        values = theta * x - bounds[groups]  # per sample: theta x_j - c_a; the group means are theta m_a - c_a
        return (theta - 3) ** 2, [constraint.observe(values, groups)]

    for _ in range(1500):
        report = pd.step(closure)
    assert float(theta) == pytest.approx(float(t.value), abs=1e-4)
    lam = multiplier.weight.detach().reshape(-1)
    assert torch.allclose(lam, torch.tensor([float(r.dual_value) for r in rows], dtype=torch.float64), atol=1e-3)
    assert torch.allclose(lam / alpha, torch.tensor(u.value), atol=1e-3) and float(lam[1]) == 0.0
    assert report.constraints["g"].relaxation_max == pytest.approx(float(u.value.max()), abs=1e-3)


def test_the_quadratic_relaxation_is_leaky_dual_ascent_step_for_step():
    """lambda <- [lambda + eta (g - lambda / alpha)]_+ : the relaxed dual step, written out by hand."""
    alpha, lr, dual_lr = 0.7, 0.05, 0.3
    constraint = Constraint(d=sq_l2, margin=FixedMargin(1.0), name="c", relax=Quadratic(alpha))
    theta = torch.nn.Parameter(torch.tensor([2.5], dtype=torch.float64))
    multiplier = ScalarMultiplier(init=0.2).double()
    pd = PrimalDual(torch.optim.SGD([theta], lr=lr), {constraint: multiplier}, dual_lr=dual_lr)
    zeros = torch.zeros(4, 1, dtype=torch.float64)

    def closure():  # g = theta^2 - 1 for each of the 4 samples
        return ((theta - 3) ** 2).sum(), [constraint.observe(theta.expand(4, 1), zeros)]

    t, lam = 2.5, float(multiplier.value().detach())  # 0.2 as a float32 widened to float64
    for _ in range(60):
        pd.step(closure)
        g = t * t - 1.0
        t, lam = t - lr * (2 * (t - 3) + lam * 2 * t), max(0.0, lam + dual_lr * (g - lam / alpha))
        assert float(theta) == pytest.approx(t, abs=1e-10, rel=0)
        assert float(multiplier.value().detach()) == pytest.approx(lam, abs=1e-10, rel=0)
    assert lam > 0 and g > 0  # the constraint stays relaxed: lambda settles at alpha (theta^2 - 1)


def test_a_relaxed_run_resumes_bit_for_bit():
    def make():
        a, c, _, _ = ball_problem()
        theta = torch.nn.Parameter(a.clone())
        constraint = Constraint(d=sq_l2, margin=NormMargin(RHO), name="ball", relax=Quadratic(1.0))
        multiplier = PerSampleTable(a.shape[0])
        optimizer = torch.optim.SGD([theta], lr=0.5, momentum=0.5)
        pd = PrimalDual(optimizer, {constraint: multiplier}, dual_lr=0.1, primal_steps_per_dual=2)

        def closure():
            return (theta - a).pow(2).sum(dim=1).mean(), [constraint.observe(theta, c, indices=torch.arange(6))]

        return theta, optimizer, pd, closure

    theta, optimizer, pd, closure = make()
    for _ in range(30):
        pd.step(closure)
    uninterrupted = (theta.detach().clone(), copy.deepcopy(pd.state_dict()))
    theta, optimizer, pd, closure = make()
    for _ in range(13):
        pd.step(closure)
    saved = copy.deepcopy({"theta": theta.detach().clone(), "optimizer": optimizer.state_dict(), "pd": pd.state_dict()})
    theta, optimizer, pd, closure = make()
    with torch.no_grad():
        theta.copy_(saved["theta"])
    optimizer.load_state_dict(saved["optimizer"])
    pd.load_state_dict(saved["pd"])
    for _ in range(17):
        pd.step(closure)
    assert torch.equal(theta.detach(), uninterrupted[0])
    for key, value in pd.state_dict().items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(value, uninterrupted[1][key]), key


def test_a_relaxation_where_it_cannot_act_is_refused_by_name():
    theta = torch.nn.Parameter(torch.zeros(2, 3))
    relaxed = Constraint(d=sq_l2, margin=NormMargin(RHO), name="c", relax=Quadratic(1.0))
    with pytest.raises(ValueError, match="'c': FixedPenalty cannot relax it"):
        PrimalDual(torch.optim.SGD([theta], lr=0.1), {relaxed: None}, formulation=FixedPenalty(1.0))
    equality = Constraint(d=sq_l2, name="e", kind="equality", relax=Quadratic(1.0))
    with pytest.raises(ValueError, match="'e' is an equality: a relaxation u >= 0 loosens an inequality"):
        PrimalDual(torch.optim.SGD([theta], lr=0.1), {equality: ScalarMultiplier()}, formulation=Lagrangian())
    with pytest.raises(TypeError, match="'x': relax must implement constrained.RelaxationCost"):
        Constraint(d=sq_l2, name="x", relax=1.0)
    with pytest.raises(ValueError, match="alpha must be a finite number > 0"):
        Quadratic(0.0)
