"""Group, rate (proxy) and equality constraints: semantics, closed-form optima, and fairlearn's own numbers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from constrained import (
    BestIterate,
    Constraint,
    FixedMargin,
    GroupConstraint,
    MultiplierNetwork,
    PrimalDual,
    RateConstraint,
    ScalarMultiplier,
    bounded_group_loss,
    demographic_parity,
    equal_opportunity,
    sq_l2,
)


def one_dual_step(constraint, values, groups, dual_lr=1.0, **observe):
    """lambda after one simultaneous primal-dual step from lambda = 0 (a dummy primal parameter)."""
    theta = torch.zeros(1, requires_grad=True)
    multiplier = constraint.multiplier()
    pd = PrimalDual(torch.optim.SGD([theta], lr=0.0), {constraint: multiplier}, dual_lr=dual_lr)
    if "proxy" in observe:
        observe["proxy"] = observe["proxy"] + theta * 0  # the primal's surrogate carries the gradient
    pd.step(lambda: (theta.sum() * 0, [constraint.observe(values + theta * 0, groups, **observe)]))
    return multiplier.weight.detach().flatten().clone()


@settings(max_examples=50, deadline=None)
@given(sizes=st.lists(st.integers(0, 30), min_size=3, max_size=3), means=st.lists(st.floats(-1, 1), min_size=3, max_size=3),
       repeat=st.integers(1, 4), bound=st.floats(-0.5, 0.5))
def test_dual_step_is_the_group_mean_violation_whatever_the_batch_and_group_sizes(sizes, means, repeat, bound):
    """lambda_a moves by dual_lr x (mean of g over the group's members - bound), projected at 0; absent groups stay."""
    if sum(sizes) == 0:
        return
    groups = torch.cat([torch.full((n,), a, dtype=torch.long) for a, n in enumerate(sizes)])
    values = torch.cat([torch.full((n,), m) + torch.linspace(-0.1, 0.1, n) * (n > 1) for m, n in zip(means, sizes)])
    constraint = GroupConstraint(num_groups=3, bound=bound)
    lam = one_dual_step(constraint, values, groups)
    bigger = one_dual_step(constraint, values.repeat(repeat), groups.repeat(repeat))  # a batch `repeat` times larger
    for a, n in enumerate(sizes):
        expected = max(0.0, means[a] - bound) if n else 0.0  # symmetric jitter keeps the group mean exact
        assert lam[a].item() == pytest.approx(expected, abs=1e-5)
        assert bigger[a].item() == pytest.approx(expected, abs=1e-5)


def test_absent_groups_are_untouched_and_reports_say_so():
    constraint = GroupConstraint(num_groups=3, bound=0.0, name="g")
    theta = torch.zeros(1, requires_grad=True)
    multiplier = constraint.multiplier(init=0.7)
    pd = PrimalDual(torch.optim.SGD([theta], lr=0.1), {constraint: multiplier}, dual_lr=1.0)
    values, groups = torch.tensor([0.5, 0.5, -0.2]), torch.tensor([0, 0, 2])
    report = pd.step(lambda: ((theta ** 2).sum(), [constraint.observe(values + theta, groups)]))
    assert multiplier.weight[1].item() == pytest.approx(0.7)  # group 1 was not in the batch
    assert multiplier.weight[0].item() == pytest.approx(1.2) and multiplier.weight[2].item() == pytest.approx(0.5)
    per_group = report.constraints["g"].group_violations
    assert per_group[0] == pytest.approx(0.5) and math.isnan(per_group[1]) and per_group[2] == pytest.approx(-0.2)
    assert "g/group_violations/group1" in report.as_dict()


def test_group_violations_are_keyed_by_the_side_stratum_and_group_they_price():
    """The keys were g/group_violations/0..3, which a reader could not map to (side, group)."""
    constraint = GroupConstraint(num_groups=2, bound=0.1, two_sided=True, name="g")
    assert constraint.multiplier_labels() == ("upper/group0", "upper/group1", "lower/group0", "lower/group1")
    assert GroupConstraint(num_groups=2, num_strata=2, name="e").multiplier_labels()[1:3] == (
        "stratum0/group1", "stratum1/group0")
    theta = torch.zeros(1, requires_grad=True)
    pd = PrimalDual(torch.optim.SGD([theta], lr=0.1), {constraint: constraint.multiplier()}, dual_lr=1.0)
    values, groups = torch.tensor([0.5, -0.4]), torch.tensor([0, 1])
    flat = pd.step(lambda: ((theta ** 2).sum(), [constraint.observe(values + theta, groups)])).as_dict()
    keys = sorted(k for k in flat if k.startswith("g/group_violations/"))
    assert keys == ["g/group_violations/lower/group0", "g/group_violations/lower/group1",
                    "g/group_violations/upper/group0", "g/group_violations/upper/group1"]


def test_group_constrained_problem_converges_to_the_closed_form_optimum():
    """min (theta - 3)^2 s.t. E[theta * x | A = a] <= c_a: theta* = min_a c_a / m_a, lambda* = 2 (3 - theta*) / m_active.

    Minibatches of random size and composition; within each group x is constant, so every batch sees the exact
    group means. (A group absent from a batch exerts no force on that step, so in expectation the primal feels
    P(present) x lambda: batches of >= 12 keep that factor above 0.99.)
    """
    m, c = torch.tensor([1.0, 2.0, 0.5]), torch.tensor([2.0, 3.0, 2.0])  # limits c/m = 2, 1.5, 4 -> group 1 binds
    theta_star = float((c / m).min())
    lambda_star = 2 * (3 - theta_star) / float(m[1])
    theta = torch.zeros(1, requires_grad=True)
    constraint = GroupConstraint(num_groups=3, name="bound")
    multiplier = constraint.multiplier()
    pd = PrimalDual(torch.optim.SGD([theta], lr=0.02), {constraint: multiplier}, dual_lr=0.05)
    generator = torch.Generator().manual_seed(0)
    thetas, lambdas = [], []
    for _ in range(6000):
        groups = torch.randint(0, 3, (int(torch.randint(12, 40, (1,), generator=generator)),), generator=generator)
        x = m[groups]

        def closure():
            return ((theta - 3) ** 2).sum(), [constraint.observe(theta * x - c[groups], groups)]

        pd.step(closure)
        thetas.append(theta.item())
        lambdas.append(multiplier.weight.detach().clone())
    theta_mean, lambda_mean = np.mean(thetas[-3000:]), torch.stack(lambdas[-3000:]).mean(0)  # Polyak averages
    assert theta_mean == pytest.approx(theta_star, abs=5e-3)
    assert lambda_mean[1].item() == pytest.approx(lambda_star, rel=3e-2)
    assert lambda_mean[0].item() == pytest.approx(0.0, abs=1e-2) and lambda_mean[2].item() == pytest.approx(0.0, abs=1e-2)


def test_equality_constraint_has_a_multiplier_of_free_sign():
    """min (theta - 3)^2 s.t. theta = 1: theta* = 1, lambda* = -2 (theta* - 3) = 4; and s.t. theta = 5: lambda* = -4."""
    for target, lambda_star in ((1.0, 4.0), (5.0, -4.0)):
        theta = torch.zeros(1, requires_grad=True)
        constraint = Constraint(d=lambda out, ref: out.squeeze(1), margin=FixedMargin(target), kind="equality", name="eq")
        multiplier = ScalarMultiplier()
        pd = PrimalDual(torch.optim.SGD([theta], lr=0.05), {constraint: multiplier}, dual_lr=0.05)
        for _ in range(4000):
            pd.step(lambda: (((theta - 3) ** 2).sum(), [constraint.observe(theta.expand(4, 1), torch.zeros(4, 1))]))
        assert theta.item() == pytest.approx(target, abs=1e-3)
        assert multiplier.weight.item() == pytest.approx(lambda_star, rel=1e-2)
    with pytest.raises(ValueError, match="free sign"):
        PrimalDual(torch.optim.SGD([theta], lr=0.1), {constraint: MultiplierNetwork(in_features=4)})


def test_the_dual_sees_the_true_rate_and_the_primal_the_proxy():
    dp = demographic_parity(num_groups=2, bound=0.0, temperature=1.0)
    scores = torch.tensor([3.0, 0.1, -0.1, -3.0], requires_grad=True)
    groups = torch.tensor([0, 0, 1, 1])
    observation = dp.observe_scores(scores, groups)
    # true rates: group 0 -> 1.0, group 1 -> 0.0, overall 0.5; entries: +side (g0, g1), -side (g0, g1)
    assert observation.strict_violation.tolist() == pytest.approx([0.5, -0.5, -0.5, 0.5])
    proxy = torch.sigmoid(scores.detach())
    gap = (proxy[:2].mean() - proxy.mean()).item()
    assert observation.violation.detach().tolist() == pytest.approx([gap, -gap, -gap, gap], abs=1e-6)
    assert observation.violation.requires_grad and not observation.strict_violation.requires_grad
    lam = one_dual_step(dp, (scores.detach() > 0).float(), groups, proxy=torch.sigmoid(scores.detach()))
    assert lam.tolist() == pytest.approx([0.5, 0.0, 0.0, 0.5])  # the true gap, not the proxy's smaller one


def test_several_kinds_of_constraints_in_one_primal_dual():
    """A per-sample bound, a group bound and an equality, enforced together on a linear model."""
    torch.manual_seed(0)
    x, groups = torch.randn(64, 3), torch.randint(0, 2, (64,))
    model = torch.nn.Linear(3, 1)
    per_sample = Constraint(d=sq_l2, margin=FixedMargin(9.0), name="bounded_output")
    group = bounded_group_loss(2, 1.0, name="group_loss")
    mean_zero = Constraint(d=lambda out, ref: out.squeeze(1), kind="equality", name="mean_output")
    pd = PrimalDual(torch.optim.Adam(model.parameters(), lr=0.02),
                    {per_sample: ScalarMultiplier(), group: group.multiplier(), mean_zero: ScalarMultiplier()}, dual_lr=0.2)
    signal = x @ torch.tensor([1.0, -2.0, 0.5])
    target = signal - signal.mean() + 0.3  # a mean output of 0 costs little: all three constraints are feasible
    for _ in range(3000):
        def closure():
            out = model(x)
            losses = (out.squeeze(1) - target).pow(2)
            return losses.mean(), [per_sample.observe(out, torch.zeros_like(out)), group.observe(losses, groups),
                                   mean_zero.observe(out, torch.zeros_like(out))]
        report = pd.step(closure)
    with torch.no_grad():
        out = model(x).squeeze(1)
    assert abs(out.mean().item()) < 0.02  # the equality holds
    assert report.constraints["group_loss"].violation_max <= 0.01  # each group within its bound
    assert report.constraints["bounded_output"].violation_mean <= 0  # a scalar multiplier bounds the mean
    assert set(report.constraints) == {"bounded_output", "group_loss", "mean_output"}


def test_group_constraints_refuse_mismatched_inputs():
    constraint = GroupConstraint(num_groups=2, name="g")
    with pytest.raises(ValueError, match="groups must lie in"):
        constraint.observe(torch.zeros(3), torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="int64"):
        constraint.observe(torch.zeros(3), torch.tensor([0.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match="GroupMultiplier with 2 entries"):
        PrimalDual(torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1), {constraint: ScalarMultiplier()})
    with pytest.raises(ValueError, match="already two-sided"):
        GroupConstraint(num_groups=2, kind="equality", two_sided=True)
    with pytest.raises(ValueError, match="strict_violation feeds the dual"):
        from constrained import Observation

        Observation(constraint, torch.zeros(2), strict_violation=torch.zeros(2, requires_grad=True))


def test_best_iterate_keeps_the_best_feasible_model():
    theta = torch.nn.Parameter(torch.zeros(1))
    model = torch.nn.Module()
    model.theta = theta
    constraint = GroupConstraint(num_groups=1, bound=1.0, name="cap")
    pd = PrimalDual(torch.optim.SGD([theta], lr=0.3), {constraint: constraint.multiplier()}, dual_lr=1.0)
    best = BestIterate(tolerance=0.0)
    for _ in range(60):  # maximise theta (loss -theta) subject to theta <= 1: iterates overshoot and come back
        best.step(pd, lambda: (-theta.sum(), [constraint.observe(theta.expand(3), torch.zeros(3, dtype=torch.long))]), model)
    best.restore(model)
    assert best.feasible and theta.item() <= 1.0 + 1e-6 and theta.item() > 0.9


def test_a_minibatch_without_an_eligible_member_adds_nothing_and_is_reported_as_unmeasured():
    """Equal opportunity on a minibatch with no y = 1: no true-positive rate exists to bound. The step goes on
    (it is not an error), the constraint adds no gradient, and its violations report NaN, not 0; the multiplier's
    mean and max are its own table's (the multiplier exists whatever the batch)."""
    import math

    import torch

    from constrained import PrimalDual

    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    constraint = equal_opportunity(2, 0.05)
    multiplier = constraint.multiplier()
    pd = PrimalDual(torch.optim.SGD(model.parameters(), lr=0.1), {constraint: multiplier}, dual_lr=0.5)
    x, groups = torch.randn(8, 3), torch.tensor([0, 1] * 4)

    def closure(labels):
        scores = model(x).squeeze(1)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(scores, labels.float())
        return loss, [constraint.observe_scores(scores, groups, labels)]

    reference = torch.nn.Linear(3, 1)
    reference.load_state_dict(model.state_dict())
    plain = torch.optim.SGD(reference.parameters(), lr=0.1)
    negatives = torch.zeros(8, dtype=torch.long)
    report = pd.step(lambda: closure(negatives))
    plain.zero_grad()
    torch.nn.functional.binary_cross_entropy_with_logits(reference(x).squeeze(1), negatives.float()).backward()
    plain.step()
    torch.testing.assert_close(model.weight, reference.weight)  # the constraint added nothing
    assert math.isnan(report.constraints[constraint.name].violation_mean)
    assert torch.all(multiplier.weight == 0)  # no dual step on what was not measured
    unmeasured = report.constraints[constraint.name]
    assert math.isnan(unmeasured.satisfied_fraction) and math.isnan(unmeasured.violation_max)
    assert (unmeasured.multiplier_mean, unmeasured.multiplier_max) == (0.0, 0.0)  # lambda's own table: defined
    report = pd.step(lambda: closure(torch.tensor([1, 1, 0, 0, 1, 1, 0, 0])))  # a batch with positives works as before
    assert not math.isnan(report.constraints[constraint.name].violation_mean)
    with torch.no_grad():  # lambda as a run of measured batches would leave it
        multiplier.weight.copy_(torch.tensor([0.5, 0.0, 2.0, 0.25]).reshape(multiplier.weight.shape))
    lambdas = multiplier.weight.detach().clone()
    unmeasured = pd.step(lambda: closure(negatives)).constraints[constraint.name]
    assert unmeasured.multiplier_mean == pytest.approx(float(lambdas.mean()))
    assert unmeasured.multiplier_max == pytest.approx(float(lambdas.max()))


def test_step_accumulated_compares_rows_not_group_entries():
    """A group observation has one entry per present group, whatever the batch: micro-batches are compared by the
    rows they observed (48 vs 4 is refused; 32 + 32 where one lacks group 1 is accepted)."""
    parity = demographic_parity(2, 0.05)
    net = torch.nn.Linear(3, 1)
    pd = PrimalDual(torch.optim.SGD(net.parameters(), lr=0.1), {parity: parity.multiplier()}, dual_lr=0.1)

    def closure(rows: int, groups: torch.Tensor):
        x = torch.randn(rows, 3, generator=torch.Generator().manual_seed(rows))
        scores = net(x).squeeze(1)
        return lambda: (scores.pow(2).mean(), [parity.observe_scores(scores, groups)])

    both = torch.tensor([0, 1] * 24)
    assert parity.observe_scores(torch.zeros(48), both).batch_size == 48
    with pytest.raises(ValueError, match=r"same number of rows .* got 48 rows, then 4"):
        pd.step_accumulated([closure(48, both), closure(4, torch.tensor([0, 1, 0, 1]))])
    report = pd.step_accumulated([closure(32, torch.tensor([0, 1] * 16)), closure(32, torch.zeros(32, dtype=torch.long))])
    assert pd.primal_steps == 1 and math.isfinite(report.loss)


def test_best_iterate_skips_a_step_whose_batch_did_not_observe_every_constraint():
    """Equal opportunity on a batch without a positive label measures nothing: the step is taken, not judged
    (before: "worst violation=nan" raised after the update had been applied)."""

    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    constraint = equal_opportunity(2, 0.05)
    pd = PrimalDual(torch.optim.SGD(model.parameters(), lr=0.1), {constraint: constraint.multiplier()}, dual_lr=0.5)
    x, groups = torch.randn(8, 3), torch.tensor([0, 1] * 4)

    def closure(labels):
        scores = model(x).squeeze(1)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(scores, labels.float())
        return loss, [constraint.observe_scores(scores, groups, labels)]

    best = BestIterate()
    best.step(pd, lambda: closure(torch.zeros(8, dtype=torch.long)), model)
    assert pd.primal_steps == 1 and best.unjudged == 1 and best.best_state is None
    best.step(pd, lambda: closure(torch.tensor([1, 1, 0, 0] * 2)), model)
    assert best.unjudged == 1 and best.best_step == 2  # steps count from 1


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


def test_bad_group_inputs_are_named_by_dtype_and_shape():
    constraint = GroupConstraint(2, 0.1, name="g")
    groups = torch.tensor([0, 1, 0, 1])
    with pytest.raises(TypeError, match=r"g: values must be a float tensor \[B\], got dtype torch.bool .*values.float\(\)"):
        constraint.observe(torch.tensor([True, False, True, True]), groups)
    with pytest.raises(ValueError, match=r"got shape \(4, 1\)"):
        constraint.observe(torch.zeros(4, 1), groups)
    with pytest.raises(ValueError, match=r"groups must be an int64 tensor of shape \[4\], got torch.int32 of shape \(4,\)"):
        constraint.observe(torch.zeros(4), groups.int())
    with pytest.raises(ValueError, match=r"where must be a bool tensor of shape \[4\], got torch.int64 of shape \(4,\)"):
        constraint.observe(torch.zeros(4), groups, where=torch.ones(4, dtype=torch.long))


def test_a_value_without_gradient_is_refused_naming_proxy():
    constraint = GroupConstraint(2, 0.1, name="g")
    weight = torch.nn.Parameter(torch.zeros(3))
    x, groups = torch.randn(8, 3), torch.arange(8) % 2
    pd = PrimalDual(torch.optim.SGD([weight], lr=0.1), {constraint: constraint.multiplier()}, dual_lr=0.1)
    indicator = lambda: ((x @ weight) > 0).float()  # noqa: E731 - no gradient: a rate needs a surrogate
    with pytest.raises(ValueError, match=r"'g': its violation carries no gradient .* pass it as proxy="):
        pd.step(lambda: ((x @ weight).pow(2).mean(), [constraint.observe(indicator(), groups)]))
