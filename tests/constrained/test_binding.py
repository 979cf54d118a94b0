"""Binding: a constraint and its multiplier are checked once, when PrimalDual is built."""

from __future__ import annotations

import pytest
import torch
from tiny_problems import CLEAN, tiny_problem

from constrained import (
    Constraint,
    FixedPenalty,
    GroupConstraint,
    PrimalDual,
    ScalarMultiplier,
    sq_l2,
)


def test_bad_setup_is_rejected_clearly():
    model, x, target = tiny_problem()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="maximize=True"):
        PrimalDual(opt, {CLEAN: ScalarMultiplier()}, dual_optimizer=lambda p: torch.optim.SGD(p, lr=0.1))
    with pytest.raises(ValueError, match="needs a multiplier"):
        PrimalDual(opt, [CLEAN])
    with pytest.raises(ValueError, match="takes no multiplier"):
        PrimalDual(opt, {CLEAN: ScalarMultiplier()}, formulation=FixedPenalty(1.0))
    with pytest.raises(ValueError, match="primal_steps_per_dual must be >= 1, got 0"):
        PrimalDual(opt, {CLEAN: ScalarMultiplier()}, primal_steps_per_dual=0)
    with pytest.raises(ValueError, match="mode must be one of"):
        PrimalDual(opt, {CLEAN: ScalarMultiplier()}, mode="jacobi")
    twin = Constraint(d=sq_l2, name="clean")
    with pytest.raises(ValueError, match="share the name 'clean'"):
        PrimalDual(opt, {CLEAN: ScalarMultiplier(), twin: ScalarMultiplier()})


def test_one_multiplier_object_bound_to_two_constraints_is_refused():
    first, second = GroupConstraint(2, 0.1, name="first"), GroupConstraint(2, 0.1, name="second")
    shared = first.multiplier()
    with pytest.raises(ValueError, match="'second' is given the multiplier object of 'first'"):
        PrimalDual(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1), {first: shared, second: shared})


def test_an_unhashable_constraint_is_refused_saying_how_to_fix_it():
    import dataclasses

    @dataclasses.dataclass
    class Unhashable:  # a plain dataclass defines __eq__ and so drops __hash__
        name: str = "u"
        kind: str = "inequality"
        summed: bool = False

    model, _, _ = tiny_problem()
    with pytest.raises(TypeError, match=r"a constraint must be hashable .* Unhashable is not: use @dataclass\(frozen=True\)"):
        PrimalDual(torch.optim.SGD(model.parameters(), lr=0.1), [Unhashable()], formulation=FixedPenalty(1.0))
    from constrained.binding import check_hashable

    check_hashable(CLEAN)  # the library's constraints are frozen dataclasses
