"""constrained.lagrangian: the two Lagrangian halves as pure functions, against the formulas written out here."""

from __future__ import annotations

import pytest
import torch

from constrained import (
    AugmentedLagrangian,
    Constraint,
    FixedPenalty,
    GroupConstraint,
    IndexedMultiplier,
    Lagrangian,
    LinearMultiplier,
    NormMargin,
    ScalarMultiplier,
    sq_l2,
)
from constrained.binding import bind
from constrained.lagrangian import dual_lagrangian, multiplier_values, price, primal_lagrangian

B, F = 6, 3


def priced(constraint, multiplier, formulation, observation):
    binding = bind(constraint, multiplier, formulation, {})
    return {constraint.name: price(binding, observation)}


def observation_of(constraint, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = torch.randn(B, F, generator=g, dtype=torch.float64, requires_grad=True)
    ref = torch.randn(B, F, generator=g, dtype=torch.float64)
    return out, ref, constraint.observe(out, ref, features=ref, indices=torch.arange(B))


def test_a_per_sample_multiplier_prices_the_batch_mean_of_lambda_g():
    constraint = Constraint(d=sq_l2, margin=NormMargin(0.1), name="c")
    multiplier = LinearMultiplier(F, init=0.7).double()
    out, ref, observation = observation_of(constraint)
    terms = priced(constraint, multiplier, Lagrangian(), observation)
    values = multiplier_values(terms, Lagrangian())
    lam, g = multiplier(ref), constraint.violation(out, ref)
    f = torch.tensor(1.25, dtype=torch.float64)
    assert torch.allclose(primal_lagrangian(f, terms, values, Lagrangian()), f + (lam.detach() * g).mean())
    dual = dual_lagrangian(terms, values, Lagrangian(), weight=0.5)
    assert torch.allclose(dual, 0.5 * (lam * g.detach()).mean())
    # the primal half carries no dual gradient and the dual half no model gradient
    (grad_out,) = torch.autograd.grad(primal_lagrangian(f, terms, values, Lagrangian()), out)
    assert torch.allclose(grad_out, (lam.detach()[:, None] * 2 * (out - ref) / B).detach())
    assert not any(p.grad is not None for p in multiplier.parameters())
    dual.backward()
    assert out.grad is None and all(p.grad is not None for p in multiplier.parameters())


def test_an_averaging_multiplier_sees_the_mean_violation_and_a_per_index_one_its_own_sample():
    constraint = Constraint(d=sq_l2, margin=NormMargin(0.1), name="c")
    out, ref, observation = observation_of(constraint, seed=1)
    g = constraint.violation(out, ref).detach()
    scalar = ScalarMultiplier(0.3).double()
    terms = priced(constraint, scalar, Lagrangian(), observation)
    values = multiplier_values(terms, Lagrangian())
    assert terms["c"].violation.shape == (1,) and torch.allclose(terms["c"].violation, g.mean())
    assert torch.allclose(dual_lagrangian(terms, values, Lagrangian(), weight=0.25), 0.25 * 0.3 * g.mean())
    table = IndexedMultiplier(B, init=0.2).double()
    terms = priced(constraint, table, Lagrangian(), observation)
    values = multiplier_values(terms, Lagrangian())
    # per index: each entry owns one sample, so the dual half is neither averaged over B nor weighted
    assert torch.allclose(dual_lagrangian(terms, values, Lagrangian(), weight=0.25), (0.2 * g).sum())
    f = torch.zeros((), dtype=torch.float64)
    assert torch.allclose(primal_lagrangian(f, terms, values, Lagrangian()), (0.2 * g).mean())


def test_a_summed_constraint_adds_its_entries_and_a_fixed_penalty_has_no_dual_half():
    groups = GroupConstraint(2, 0.1, name="groups")
    losses = torch.tensor([0.5, 0.1, 0.4, 0.3], dtype=torch.float64, requires_grad=True)
    observation = groups.observe(losses, torch.tensor([0, 0, 1, 1]))
    multiplier = groups.multiplier(init=2.0).double()
    terms = priced(groups, multiplier, Lagrangian(), observation)
    values = multiplier_values(terms, Lagrangian())
    expected = 2.0 * ((0.3 - 0.1) + (0.35 - 0.1))  # summed over the groups' mean violations
    assert primal_lagrangian(torch.zeros((), dtype=torch.float64), terms, values, Lagrangian()).item() == pytest.approx(expected)
    constraint = Constraint(d=sq_l2, margin=NormMargin(0.1), name="c")
    out, ref, observation = observation_of(constraint)
    terms = priced(constraint, None, FixedPenalty(3.0), observation)
    values = multiplier_values(terms, FixedPenalty(3.0))
    assert values["c"].tolist() == [3.0]
    f = torch.zeros((), dtype=torch.float64)
    assert torch.allclose(primal_lagrangian(f, terms, values, FixedPenalty(3.0)), 3.0 * constraint.violation(out, ref).mean())
    assert dual_lagrangian(terms, values, FixedPenalty(3.0), weight=1.0) is None


def test_the_augmented_lagrangians_primal_half_is_nocedal_and_wrights():
    constraint = Constraint(d=sq_l2, margin=NormMargin(0.1), name="c")
    out, ref, observation = observation_of(constraint, seed=2)
    formulation = AugmentedLagrangian(0.5)
    multiplier = LinearMultiplier(F, init=0.4).double()
    terms = priced(constraint, multiplier, formulation, observation)
    values = multiplier_values(terms, formulation)
    lam, g, c = multiplier(ref).detach(), constraint.violation(out, ref), 0.5
    expected = ((torch.relu(lam + c * g) ** 2 - lam**2) / (2 * c)).mean()  # N&W 17.65 per sample, batch mean
    f = torch.zeros((), dtype=torch.float64)
    assert torch.allclose(primal_lagrangian(f, terms, values, formulation), expected)


def test_a_multiplier_of_the_wrong_shape_is_named():
    class TooMany(torch.nn.Module):
        averages_constraint, per_index, free_sign = False, False, False

        def features_of(self, observation):
            return observation.features

        def value(self, features):
            return torch.ones(features.shape[0] + 1, dtype=features.dtype)

        def bind(self, equality):
            pass

        def project_(self):
            pass

    constraint = Constraint(d=sq_l2, margin=NormMargin(0.1), name="c")
    _, _, observation = observation_of(constraint)
    terms = priced(constraint, TooMany(), Lagrangian(), observation)
    with pytest.raises(ValueError, match=r"constraint 'c': TooMany\.value\(\) gives lambda of shape \(7,\) for violations of shape \(6,\)"):
        multiplier_values(terms, Lagrangian())


class UserMultiplier(torch.nn.Module):
    """A user's multiplier whose `value` returns whatever `returns(weight, features)` gives."""

    averages_constraint, per_index, free_sign = False, False, False

    def __init__(self, returns):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
        self.returns = returns

    def features_of(self, observation):
        return observation.features

    def value(self, features):
        return self.returns(self.weight, features)

    def bind(self, equality):
        pass

    def project_(self):
        pass


@pytest.mark.parametrize("returns,error,needle", [
    (lambda w, x: 0.5, TypeError, r"UserMultiplier\.value\(\) returned a float; it must return a floating-point torch\.Tensor"),
    (lambda w, x: w.detach().numpy(), TypeError, r"UserMultiplier\.value\(\) returned a ndarray"),
    (lambda w, x: torch.ones(x.shape[0], dtype=torch.int64), TypeError, r"returned a torch\.int64 tensor; lambda must be floating"),
    (lambda w, x: (w + torch.ones(x.shape[0], dtype=x.dtype)).detach(), ValueError, r"lambda detached from the multiplier's parameters"),
    (lambda w, x: -torch.nn.functional.softplus(w + torch.zeros(x.shape[0], dtype=x.dtype)) - 1, ValueError,
     r"returned a negative lambda \(-1\.69.*\) for an inequality constraint \(free_sign=False\)"),
])
def test_a_users_multiplier_is_checked_at_the_boundary_naming_its_class(returns, error, needle):
    """Only the shape was checked: a float or an array died deep in torch, a detached lambda never moved, and a
    multiplier claiming free_sign=False that returned -softplus(w)-1 trained with the bound acting as a reward."""
    constraint = Constraint(d=sq_l2, margin=NormMargin(0.1), name="c")
    _, _, observation = observation_of(constraint)
    terms = priced(constraint, UserMultiplier(returns), Lagrangian(), observation)
    with pytest.raises(error, match=needle):
        multiplier_values(terms, Lagrangian())


class UserFormulation:
    """Lagrangian's terms, with one member replaced by `broken`."""

    needs_multiplier, fixed_weight = True, None

    def __init__(self, member, broken):
        self.member, self.broken = member, broken

    def primal_term(self, multiplier, violation, equality):
        if self.member == "primal_term":
            return self.broken(multiplier, violation)
        return (multiplier.detach() * violation).sum()

    def dual_term(self, multiplier, violation):
        if self.member == "dual_term":
            return self.broken(multiplier, violation)
        return (multiplier * violation.detach()).sum()


@pytest.mark.parametrize("member,broken,error,needle", [
    ("primal_term", lambda lam, g: float((lam.detach() * g).sum()), TypeError,
     r"UserFormulation\.primal_term\(\) returned a float; .*a float carries no gradient"),
    ("primal_term", lambda lam, g: lam.detach() * g, ValueError, r"primal_term\(\) returned a torch\.float64 tensor of shape \(6,\)"),
    ("primal_term", lambda lam, g: (lam.detach() * g).sum().reshape(1), ValueError,
     r"of shape \(1,\); it must return a floating-point scalar"),
    ("primal_term", lambda lam, g: (lam.detach() * g.detach()).sum(), ValueError,
     r"primal_term\(\) returned a term detached from the violations"),
    ("dual_term", lambda lam, g: lam * g.detach(), ValueError,
     r"UserFormulation\.dual_term\(\) returned a torch\.float64 tensor of shape \(6,\)"),
    ("dual_term", lambda lam, g: 1.0, TypeError, r"UserFormulation\.dual_term\(\) returned a float"),
])
def test_a_users_formulation_is_checked_at_the_boundary_naming_its_class(member, broken, error, needle):
    """A primal term returned as a float trained unconstrained (theta stayed at the unconstrained optimum, no
    error); other shapes failed in torch's broadcasting, and a float dual term in an assert."""
    constraint = Constraint(d=sq_l2, margin=NormMargin(0.1), name="c")
    _, _, observation = observation_of(constraint)
    formulation = UserFormulation(member, broken)
    terms = priced(constraint, LinearMultiplier(F, init=0.7).double(), formulation, observation)
    values = multiplier_values(terms, formulation)
    with pytest.raises(error, match=needle):
        primal_lagrangian(torch.zeros((), dtype=torch.float64), terms, values, formulation)
        dual_lagrangian(terms, values, formulation, weight=1.0)


def test_a_formulation_without_multipliers_must_give_a_number():
    class NoWeight(UserFormulation):
        needs_multiplier, fixed_weight = False, None

    constraint = Constraint(d=sq_l2, margin=NormMargin(0.1), name="c")
    _, _, observation = observation_of(constraint)
    formulation = NoWeight("none", None)
    with pytest.raises(TypeError, match=r"NoWeight\.fixed_weight is None; .* must give a number"):
        multiplier_values(priced(constraint, None, formulation, observation), formulation)
