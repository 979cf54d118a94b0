"""Inputs that used to give silently wrong results are refused before anything changes (issue 20, items 5-7)."""

from __future__ import annotations

import math

import pytest
import torch

from constrained import BestIterate, GroupConstraint, PrimalDual, RateConstraint, demographic_parity


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


@pytest.mark.parametrize("objective, worst", [(math.nan, 0.0), (0.5, math.nan), (math.inf, 0.0)])
def test_best_iterate_never_keeps_a_non_finite_iterate(objective, worst):
    model = torch.nn.Linear(2, 1)
    best = BestIterate()
    assert best.offer(model, 1.0, 0.0)
    with pytest.raises(ValueError, match="finite objective and worst violation"):
        best.offer(model, objective, worst)
    assert best.best_key == (0, 1.0)  # the finite iterate is still the kept one


@pytest.mark.parametrize("after", [-1, 2.5, True])
def test_best_iterate_refuses_a_meaningless_after(after):
    with pytest.raises(ValueError, match="after must be an int >= 0"):
        BestIterate(after=after)


@pytest.mark.parametrize("bound", [math.inf, -math.inf, math.nan])
def test_group_bounds_must_be_finite(bound):
    with pytest.raises(ValueError, match="bound must be a finite number"):
        GroupConstraint(2, bound)


@pytest.mark.parametrize("temperature", [math.inf, 0.0, -1.0, math.nan])
def test_a_rate_proxy_needs_a_finite_positive_temperature(temperature):
    with pytest.raises(ValueError, match="temperature must be finite and > 0"):
        demographic_parity(2, 0.05, temperature=temperature)
    with pytest.raises(ValueError, match="temperature must be finite and > 0"):
        RateConstraint(2, 0.05, relative=True, two_sided=True, temperature=temperature)


def test_a_state_saved_under_another_bound_is_refused_not_loaded():
    """Saved with bound 0.1, loaded into bound 0.3: the multipliers priced another constraint."""
    import pytest
    import torch

    from constrained import GroupConstraint, PrimalDual

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

    from constrained import Constraint, FixedMargin, IndexedMultiplier, PrimalDual, sq_l2

    def stepper(n):
        constraint = Constraint(d=sq_l2, margin=FixedMargin(1.0), name="c")
        return PrimalDual(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1),
                          {constraint: IndexedMultiplier(n)})

    state = stepper(10).state_dict()
    with pytest.raises(ValueError, match="multipliers do not fit"):
        stepper(12).load_state_dict(state)


def _group_stepper():
    constraint = GroupConstraint(2, 0.1, name="group")
    weight = torch.nn.Parameter(torch.zeros(1))
    return PrimalDual(torch.optim.SGD([weight], lr=0.1), {constraint: constraint.multiplier()}, dual_lr=0.1), weight


@pytest.mark.parametrize("key, value, needle", [("primal_steps", "12", "primal_steps must be a non-negative integer"),
                                                 ("primal_steps", 2.5, "primal_steps must be a non-negative integer"),
                                                 ("dual_steps", -1, "dual_steps must be a non-negative integer")])
def test_a_state_with_a_non_numeric_step_count_is_refused_before_anything_loads(key, value, needle):
    source, _ = _group_stepper()
    source.multipliers["group"].weight.data.fill_(0.7)
    state = {**source.state_dict(), key: value}
    target, _ = _group_stepper()
    with pytest.raises(ValueError, match=needle):
        target.load_state_dict(state)
    assert float(target.multipliers["group"].weight.abs().max()) == 0.0  # the multipliers were not loaded either


@pytest.mark.parametrize("value, needle", [(-0.5, "negative values .min -0.5"), (math.nan, "is not finite")])
def test_negative_or_non_finite_inequality_multipliers_are_refused(value, needle):
    source, _ = _group_stepper()
    state = source.state_dict()
    state["multipliers"] = {k: v.clone().fill_(value) for k, v in state["multipliers"].items()}
    with pytest.raises(ValueError, match=needle):
        _group_stepper()[0].load_state_dict(state)


def test_one_multiplier_object_bound_to_two_constraints_is_refused():
    first, second = GroupConstraint(2, 0.1, name="first"), GroupConstraint(2, 0.1, name="second")
    shared = first.multiplier()
    with pytest.raises(ValueError, match="'second' is given the multiplier object of 'first'"):
        PrimalDual(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1), {first: shared, second: shared})


def test_a_non_finite_gradient_behind_a_finite_lagrangian_stops_the_same_step():
    """The norm ||w|| at w = 0 has the finite value 0 and a non-finite gradient (sqrt's derivative at 0): before,
    the weights became NaN and the next step raised; now the step that would apply it stops, weights unchanged."""
    constraint = GroupConstraint(2, 0.5)
    weight = torch.nn.Parameter(torch.zeros(3))
    pd = PrimalDual(torch.optim.SGD([weight], lr=0.1), {constraint: constraint.multiplier()}, dual_lr=0.1)
    x, groups = torch.randn(8, 3), torch.arange(8) % 2

    def closure():
        return weight.pow(2).sum().sqrt(), [constraint.observe(torch.sigmoid(x @ weight), groups)]

    with pytest.raises(FloatingPointError, match="primal gradient is not finite although the Lagrangian is"):
        pd.step(closure)
    assert torch.equal(weight.detach(), torch.zeros(3)) and pd.primal_steps == 0
