"""Margins, the violation's sign and value, and the paper's App. F cosine bound."""

from __future__ import annotations

import pytest
import torch

from constrained import Constraint, Lagrangian, NormMargin, Observation, PrimalDual, sq_l2
from constrained.binding import bind
from constrained.protocols import ConstraintKind, FitsFeatures, Formulation, HasEntries, MultiplierKind


def test_observation_checks_features_and_indices():
    c = Constraint(d=sq_l2, margin=NormMargin(0.1))
    out, ref = torch.randn(4, 3), torch.randn(4, 3)
    with pytest.raises(ValueError, match="batch size 4"):
        c.observe(out, ref, features=torch.randn(3, 8))
    with pytest.raises(TypeError, match="int64"):
        c.observe(out, ref, indices=torch.arange(4).int())
    with pytest.raises(ValueError, match=r"shape \[B\]=\[4\]"):
        c.observe(out, ref, indices=torch.arange(5))


RHO = 0.25


class PerSampleTable(torch.nn.Module):
    """lambda_i >= 0, one entry per dataset index: the protocol's members and nothing else."""

    averages_constraint = False
    per_index = True
    free_sign = False

    def __init__(self, samples: int) -> None:
        super().__init__()
        self.table = torch.nn.Parameter(torch.zeros(samples, dtype=torch.float64))

    def features_of(self, observation: Observation) -> torch.Tensor:
        if observation.indices is None:
            raise ValueError("PerSampleTable needs observe(..., indices=)")
        return observation.indices

    def value(self, features):
        return self.table[features]

    def bind(self, equality: bool) -> None:
        if equality:
            raise ValueError("PerSampleTable is >= 0: it cannot price an equality")

    def project_(self) -> None:
        with torch.no_grad():
            self.table.clamp_(min=0.0)


class PlainLagrangian:
    """f + E[lambda g], written from the `Formulation` protocol."""

    needs_multiplier = True
    fixed_weight = None

    def primal_term(self, multiplier, violation, equality):
        return (multiplier.detach() * violation).sum()

    def dual_term(self, multiplier, violation):
        return (multiplier * violation.detach()).sum()


def ball_problem(n: int = 6, d: int = 3):
    """min mean_i ||theta_i - a_i||^2 s.t. ||theta_i - c_i||^2 <= rho ||c_i||^2: theta_i* is a_i projected on
    the ball, lambda_i* = max(0, ||a_i - c_i|| / R_i - 1)."""
    g = torch.Generator().manual_seed(0)
    c = torch.randn(n, d, generator=g, dtype=torch.float64) + 2.0
    radius = RHO**0.5 * c.norm(dim=1)
    direction = torch.nn.functional.normalize(torch.randn(n, d, generator=g, dtype=torch.float64), dim=1)
    scale = torch.tensor([2.0, 3.0, 1.5, 0.5, 0.3, 2.5], dtype=torch.float64)[:n]
    a = c + direction * (scale * radius)[:, None]
    distance = (a - c).norm(dim=1)
    theta_star = c + (a - c) * torch.clamp(radius / distance, max=1.0)[:, None]
    return a, c, theta_star, torch.clamp(distance / radius - 1.0, min=0.0)


def solve(multiplier, formulation, steps: int = 3000):
    a, c, theta_star, lambda_star = ball_problem()
    theta = torch.nn.Parameter(a.clone())
    constraint = Constraint(d=sq_l2, margin=NormMargin(RHO), name="ball")
    pd = PrimalDual(torch.optim.SGD([theta], lr=0.5), {constraint: multiplier}, formulation=formulation, dual_lr=0.1)
    indices = torch.arange(a.shape[0])

    def closure():
        return (theta - a).pow(2).sum(dim=1).mean(), [constraint.observe(theta, c, indices=indices)]

    for _ in range(steps):
        pd.step(closure)
    return theta.detach(), theta_star, lambda_star


def test_the_test_classes_are_plain_and_satisfy_the_protocols():
    assert PerSampleTable.__mro__[1:] == (torch.nn.Module, object)
    assert PlainLagrangian.__mro__ == (PlainLagrangian, object)
    assert isinstance(PerSampleTable(2), MultiplierKind) and isinstance(PlainLagrangian(), Formulation)
    assert isinstance(Constraint(d=sq_l2, margin=NormMargin(RHO)), ConstraintKind)


@pytest.mark.parametrize("formulation", [Lagrangian(), PlainLagrangian()], ids=["library-formulation", "protocol-formulation"])
def test_a_protocol_only_multiplier_reaches_the_kkt_point(formulation):
    multiplier = PerSampleTable(6)
    theta, theta_star, lambda_star = solve(multiplier, formulation)
    assert torch.allclose(theta, theta_star, atol=1e-6)
    # the primal term is E_i[lambda_i g_i]: theta_i's stationarity 2(theta_i - a_i) + lambda_i grad g_i = 0 is the
    # per-sample problem's, so lambda_i -> lambda_i* = max(0, ||a_i - c_i|| / R_i - 1)
    lam = multiplier.table.detach()
    assert torch.allclose(lam, lambda_star, atol=1e-5)
    assert (lam[lambda_star == 0] == 0).all()  # inactive constraints: exactly zero after the projection


def test_the_library_and_protocol_only_formulations_take_identical_steps():
    runs = [solve(PerSampleTable(6), formulation, steps=20)[0] for formulation in (Lagrangian(), PlainLagrangian())]
    assert torch.allclose(runs[0], runs[1], atol=1e-12, rtol=0)


def test_a_multiplier_missing_a_protocol_member_is_refused_by_name():
    class NoProjection(torch.nn.Module):
        averages_constraint, per_index, free_sign = False, True, False

        def features_of(self, observation):
            return observation.indices

        def value(self, features):
            return torch.zeros(len(features))

        def bind(self, equality):
            pass

    theta = torch.nn.Parameter(torch.zeros(2, 3))
    with pytest.raises(TypeError, match=r"MultiplierKind \(.*project_\), got NoProjection"):
        PrimalDual(torch.optim.SGD([theta], lr=0.1), {Constraint(d=sq_l2, margin=NormMargin(RHO)): NoProjection()})


def test_a_users_table_multiplier_lists_its_entries_through_the_hook_and_a_plain_one_does_not():
    """Reports read every lambda of a table through the `HasEntries` hook, not by asking for a library class."""

    class ListedTable(PerSampleTable):
        def entries(self) -> torch.Tensor:
            return self.table.detach().clone()

    constraint = Constraint(d=sq_l2, margin=NormMargin(RHO))
    listed, plain = ListedTable(4), PerSampleTable(4)
    with torch.no_grad():
        listed.table.copy_(torch.tensor([0.0, 1.0, 2.0, 3.0], dtype=torch.float64))
    assert isinstance(listed, HasEntries) and not isinstance(plain, HasEntries)
    for multiplier, expected in ((listed, [0.0, 1.0, 2.0, 3.0]), (plain, None)):
        entries = bind(constraint, multiplier, Lagrangian(), {}).entries()
        assert (entries is None) if expected is None else entries.tolist() == expected


def test_primal_dual_fits_a_users_feature_statistics_through_the_hook_once():
    """`PrimalDual.unfitted_features` names the multipliers whose `FitsFeatures` hook still wants a sample of the
    features; `fit_features` hands it to them (and to no multiplier without the hook)."""

    class CentredTable(PerSampleTable):
        def __init__(self, samples: int) -> None:
            super().__init__(samples)
            self.register_buffer("centre", torch.zeros(3))
            self.fitted = False

        @property
        def features_fitted(self) -> bool:
            return self.fitted

        def fit_features(self, features: torch.Tensor) -> None:
            self.centre.copy_(features.mean(0))
            self.fitted = True

    theta = torch.nn.Parameter(torch.zeros(2, 3))
    hooked, plain = CentredTable(4), PerSampleTable(4)
    first, second = Constraint(d=sq_l2, margin=NormMargin(RHO), name="a"), Constraint(d=sq_l2, margin=NormMargin(RHO), name="b")
    stepper = PrimalDual(torch.optim.SGD([theta], lr=0.1), {first: hooked, second: plain})
    assert isinstance(hooked, FitsFeatures) and not isinstance(plain, FitsFeatures)
    assert stepper.unfitted_features() == ["a"]
    stepper.fit_features(torch.tensor([[1.0, 2.0, 3.0], [3.0, 4.0, 5.0]]), stepper.unfitted_features())
    assert hooked.centre.tolist() == [2.0, 3.0, 4.0] and stepper.unfitted_features() == []
