"""Closures: what they return is checked before any update (shape, names, gradients, finite strict violations, equal micro-batches)."""

from __future__ import annotations

import copy

import pytest
import torch
from tiny_problems import CLEAN, make_closure, tiny_problem

from constrained import (
    Constraint,
    GroupConstraint,
    IndexedMultiplier,
    MultiplierNetwork,
    PrimalDual,
    ScalarMultiplier,
    sq_l2,
)


def test_bad_closures_are_rejected_clearly():
    model, x, target = tiny_problem()
    pd = PrimalDual(torch.optim.SGD(model.parameters(), lr=0.1), {CLEAN: MultiplierNetwork(4, hidden=8)})
    with pytest.raises(ValueError, match="pass features="):
        pd.step(make_closure(model, x, target))
    with pytest.raises(ValueError, match=r"features of shape \[B, 4\]"):
        pd.step(make_closure(model, x, target, features=torch.randn(8, 3)))
    other = Constraint(d=sq_l2, name="other")
    with pytest.raises(ValueError, match="does not enforce"):
        pd.step(make_closure(model, x, target, constraint=other, features=x))
    with pytest.raises(ValueError, match="scalar tensor"):
        pd.step(lambda: (torch.zeros(3), [CLEAN.observe(model(x), x, features=x)]))
    with pytest.raises(FloatingPointError, match="Lagrangian is nan"):
        pd.step(lambda: (torch.tensor(float("nan")), [CLEAN.observe(model(x), x, features=x)]))
    indexed = PrimalDual(torch.optim.SGD(model.parameters(), lr=0.1), {CLEAN: IndexedMultiplier(4)})
    with pytest.raises(ValueError, match=r"indices must lie in \[0, 4\)"):
        indexed.step(make_closure(model, x, target, indices=torch.arange(8)))


def test_micro_batches_of_unequal_size_are_refused_before_any_update():
    model, x, target = tiny_problem(batch=10)
    before = copy.deepcopy(model.state_dict())
    pd = PrimalDual(torch.optim.SGD(model.parameters(), lr=0.1), {CLEAN: MultiplierNetwork(4, hidden=8)})
    closures = [make_closure(model, x[:6], target[:6], features=x[:6]),
                make_closure(model, x[6:], target[6:], features=x[6:])]
    with pytest.raises(ValueError, match=r"same number of rows .* got 6 rows, then 4"):
        pd.step_accumulated(closures)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert (pd.primal_steps, pd.dual_steps) == (0, 0)


def test_a_detached_violation_is_refused():
    model, x, target = tiny_problem()
    pd = PrimalDual(torch.optim.SGD(model.parameters(), lr=0.1), {CLEAN: ScalarMultiplier()})

    def closure():
        out = model(x)
        return (out - target).pow(2).mean(), [CLEAN.observe(out.detach(), x)]

    with pytest.raises(ValueError, match="'clean'.*carries no gradient"):
        pd.step(closure)


def test_a_nan_true_value_behind_a_finite_proxy_stops_the_step_before_any_update():
    torch.manual_seed(0)
    weight = torch.nn.Parameter(torch.randn(4))
    x, groups = torch.randn(32, 4), torch.arange(32) % 2
    constraint = GroupConstraint(2, 0.5)
    pd = PrimalDual(torch.optim.SGD([weight], lr=0.1), {constraint: constraint.multiplier(init=1.0)}, dual_lr=0.1)

    def closure():
        proxy = torch.sigmoid(x @ weight)
        truth = (proxy.detach() > 0.5).float()
        truth[3] = float("nan")  # e.g. a corrupt label among the true values
        return proxy.mean(), [constraint.observe(truth, groups, proxy=proxy)]

    before_weight = weight.detach().clone()
    before_multiplier = pd.multiplier(constraint.name).weight.detach().clone()
    with pytest.raises(FloatingPointError, match="strict .true. violation is not finite"):
        pd.step(closure)
    assert torch.equal(weight.detach(), before_weight)
    assert torch.equal(pd.multiplier(constraint.name).weight.detach(), before_multiplier)
