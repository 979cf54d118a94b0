"""Dual state: a round trip resumes identically; a state of another set-up or with impossible values is refused, nothing loaded."""

from __future__ import annotations

import math

import pytest
import torch
from tiny_problems import CLEAN, group_stepper, make_closure, run, tiny_problem

from constrained import (
    Constraint,
    GroupConstraint,
    IndexedMultiplier,
    MultiplierNetwork,
    PrimalDual,
    ScalarMultiplier,
    sq_l2,
)


@pytest.mark.parametrize("kind", ["scalar", "network"])
def test_state_dict_round_trip_resumes_identically(kind, tmp_path):
    torch.manual_seed(0)

    def build():
        torch.manual_seed(0)
        model, x, target = tiny_problem()
        multiplier = ScalarMultiplier(0.5) if kind == "scalar" else MultiplierNetwork(4, hidden=8)
        primal = torch.optim.Adam(model.parameters(), lr=0.01)
        pd = PrimalDual(
            primal, {CLEAN: multiplier}, dual_optimizer=lambda p: torch.optim.Adam(p, lr=0.01, maximize=True),
            primal_steps_per_dual=3,
        )
        return model, primal, pd, make_closure(model, x, target, features=x)

    model, primal, pd, closure = build()
    straight = run(pd, model, closure, 8)

    model, primal, pd, closure = build()
    run(pd, model, closure, 4)  # stop in the middle of a K-cycle
    path = tmp_path / "state.pt"
    torch.save({"model": model.state_dict(), "primal": primal.state_dict(), "dual": pd.state_dict()}, path)
    model, primal, pd, closure = build()
    state = torch.load(path, weights_only=True)
    model.load_state_dict(state["model"])
    primal.load_state_dict(state["primal"])
    pd.load_state_dict(state["dual"])
    resumed = run(pd, model, closure, 4)
    assert resumed == straight[4:]


def test_load_state_dict_rejects_a_different_setup():
    model, x, target = tiny_problem()
    pd = PrimalDual(torch.optim.SGD(model.parameters(), lr=0.1), {CLEAN: ScalarMultiplier()}, primal_steps_per_dual=2)
    other = PrimalDual(torch.optim.SGD(model.parameters(), lr=0.1), {CLEAN: ScalarMultiplier()}, primal_steps_per_dual=5)
    with pytest.raises(ValueError, match="primal_steps_per_dual=2"):
        other.load_state_dict(pd.state_dict())
    with pytest.raises(ValueError, match="not a PrimalDual state dict"):
        other.load_state_dict({"foo": 1})


def test_a_state_saved_under_another_bound_is_refused_not_loaded():
    """Saved with bound 0.1, loaded into bound 0.3: the multipliers priced another constraint."""
    import pytest
    import torch

    from constrained import PrimalDual

    def stepper(bound):
        constraint = GroupConstraint(2, bound, name="group")
        return PrimalDual(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1),
                          {constraint: constraint.multiplier()})

    saved = stepper(0.1).state_dict()
    stepper(0.1).load_state_dict(saved)  # the same set-up loads
    with pytest.raises(ValueError, match="other constraint settings.*bound=0.1.*bound=0.3"):
        stepper(0.3).load_state_dict(saved)


def test_multipliers_of_another_size_are_named_not_a_torch_runtime_error():
    import pytest
    import torch

    from constrained import FixedMargin, PrimalDual

    def stepper(n):
        constraint = Constraint(d=sq_l2, margin=FixedMargin(1.0), name="c")
        return PrimalDual(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1),
                          {constraint: IndexedMultiplier(n)})

    state = stepper(10).state_dict()
    with pytest.raises(ValueError, match="multipliers do not fit"):
        stepper(12).load_state_dict(state)


@pytest.mark.parametrize("key, value, needle", [("primal_steps", "12", "primal_steps must be a non-negative integer"),
                                                 ("primal_steps", 2.5, "primal_steps must be a non-negative integer"),
                                                 ("dual_steps", -1, "dual_steps must be a non-negative integer")])
def test_a_state_with_a_non_numeric_step_count_is_refused_before_anything_loads(key, value, needle):
    source, _ = group_stepper()
    source.multipliers["group"].weight.data.fill_(0.7)
    state = {**source.state_dict(), key: value}
    target, _ = group_stepper()
    with pytest.raises(ValueError, match=needle):
        target.load_state_dict(state)
    assert float(target.multipliers["group"].weight.abs().max()) == 0.0  # the multipliers were not loaded either


@pytest.mark.parametrize("value, needle", [(-0.5, "negative values .min -0.5"), (math.nan, "is not finite")])
def test_negative_or_non_finite_inequality_multipliers_are_refused(value, needle):
    source, _ = group_stepper()
    state = source.state_dict()
    state["multipliers"] = {k: v.clone().fill_(value) for k, v in state["multipliers"].items()}
    with pytest.raises(ValueError, match=needle):
        group_stepper()[0].load_state_dict(state)
