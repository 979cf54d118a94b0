"""Small problems the constrained tests share: a 4-d linear model under a squared-l2 constraint, a group stepper,
an L-BFGS ball problem."""

from __future__ import annotations

import torch

from constrained import (
    Constraint,
    FixedMargin,
    GroupConstraint,
    IndexedMultiplier,
    LinearMultiplier,
    MultiplierNetwork,
    NormMargin,
    PrimalDual,
    ScalarMultiplier,
    sq_l2,
)

CLEAN = Constraint(d=sq_l2, margin=NormMargin(0.1), name="clean")


def tiny_problem(seed=0, batch=8, dim=4):
    g = torch.Generator().manual_seed(seed)
    model = torch.nn.Linear(dim, dim)
    with torch.no_grad():
        model.weight.copy_(torch.eye(dim) + 0.3 * torch.randn(dim, dim, generator=g))
        model.bias.zero_()
    x = torch.randn(batch, dim, generator=g)
    target = torch.randn(batch, dim, generator=g)
    return model, x, target


def make_closure(model, x, target, constraint=CLEAN, **observe):
    def closure():
        out = model(x)
        return (out - target).pow(2).sum(1).mean(), [constraint.observe(out, x, **observe)]

    return closure


def multiplier_of(kind: str):
    """A multiplier of `kind` for `tiny_problem` (8 samples, 4 features), lambda 0.5 everywhere."""
    return {
        "scalar": lambda: ScalarMultiplier(0.5),
        "indexed": lambda: IndexedMultiplier(8, init=0.5),
        "linear": lambda: LinearMultiplier(4, init=0.5),
        "network": lambda: MultiplierNetwork(4, hidden=16, init=0.5),
    }[kind]()


def run(pd, model, closure, n):
    return [pd.step(closure).as_dict() for _ in range(n)]


def group_stepper():
    constraint = GroupConstraint(2, 0.1, name="group")
    weight = torch.nn.Parameter(torch.zeros(1))
    return PrimalDual(torch.optim.SGD([weight], lr=0.1), {constraint: constraint.multiplier()}, dual_lr=0.1), weight


def lbfgs_problem(mode: str = "alternating"):
    """min ||theta - (3, 0)||^2 s.t. ||theta||^2 <= 1: theta* = (1, 0), lambda* = 2 (KKT: 2(theta - t) + 2 lambda theta = 0)."""
    theta = torch.nn.Parameter(torch.zeros(2, dtype=torch.float64))
    target = torch.tensor([[3.0, 0.0]], dtype=torch.float64)
    bound = Constraint(d=sq_l2, margin=FixedMargin(1.0), name="ball")
    multiplier = ScalarMultiplier(init=0.0).double()
    optimizer = torch.optim.LBFGS([theta], max_iter=20, line_search_fn="strong_wolfe")
    pd = PrimalDual(optimizer, {bound: multiplier}, dual_lr=0.5, mode=mode)

    def closure():
        out = theta.unsqueeze(0)
        return (out - target).pow(2).sum(), [bound.observe(out, torch.zeros_like(out))]
    return theta, multiplier, pd, closure
