"""Constraint: the violation's sign and value, rate (chance) constraints, the paper's App. F cosine bound."""

from __future__ import annotations

import math

import hypothesis.strategies as st
import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings

from constrained import Constraint, EntropyMargin, FixedMargin, NormMargin, PrimalDual, ScalarMultiplier, kl_div, sq_l2


def test_readme_spelling_matches_the_formula():
    out, ref = torch.randn(5, 7), torch.randn(5, 7)
    v = Constraint(d=sq_l2, margin=NormMargin(0.1)).violation(out, ref)
    expected = (out - ref).pow(2).sum(1) - 0.1 * ref.pow(2).sum(1)
    assert v.shape == (5,)
    assert torch.allclose(v, expected)


def test_violation_sign():
    ref = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    inside = ref * 1.1  # ||out - ref||^2 = 0.01 ||ref||^2 < 0.1 ||ref||^2
    outside = ref * 2.0  # = ||ref||^2 > 0.1 ||ref||^2
    c = Constraint(d=sq_l2, margin=NormMargin(0.1))
    assert (c.violation(inside, ref) < 0).all()
    assert (c.violation(outside, ref) > 0).all()


def test_constraint_rejects_non_callables():
    with pytest.raises(TypeError, match="d must be callable"):
        Constraint(d=3)
    with pytest.raises(TypeError, match="margin must be callable"):
        Constraint(d=sq_l2, margin=0.1)


def test_kl_constraint_with_entropy_margin():
    ref_logits = torch.tensor([[2.0, 0.0, -1.0]])
    c = Constraint(d=kl_div, margin=EntropyMargin(0.5))
    assert c.violation(ref_logits, ref_logits).item() < 0
    assert c.violation(-5 * ref_logits, ref_logits).item() > 0


def _cos(a, b):
    return float(a @ b / (a.norm() * b.norm()))


@settings(max_examples=200, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    dim=st.integers(2, 32),
    rho=st.floats(1e-4, 0.24),
    fraction=st.floats(0.0, 1.0),
)
def test_app_f_cosine_bound(seed, dim, rho, fraction):
    """If ||u_hat - u||^2 <= rho ||u||^2 then |cos(u, v) - cos(u_hat, v)| <= 2 sqrt(rho) for any v."""
    g = torch.Generator().manual_seed(seed)
    u, v, direction = (torch.randn(dim, generator=g, dtype=torch.float64) for _ in range(3))
    assume(direction.norm() > 1e-6)
    u_hat = u + direction / direction.norm() * (fraction * math.sqrt(rho) * u.norm())
    out, ref = u_hat[None], u[None]
    assert Constraint(d=sq_l2, margin=NormMargin(rho)).violation(out, ref).item() <= 1e-9
    assert abs(_cos(u, v) - _cos(u_hat, v)) <= 2 * math.sqrt(rho) + 1e-9


def shift(out: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """d = out - ref per sample (a signed divergence: the violation is theta - u_i)."""
    return (out - ref).reshape(-1)


def test_bad_rates_are_refused():
    for rate in (-0.1, 1.0, 2):
        with pytest.raises(ValueError, match="violation_rate"):
            Constraint(d=shift, violation_rate=rate)
    with pytest.raises(ValueError, match="inequality"):
        Constraint(d=shift, kind="equality", violation_rate=0.1)


@given(rate=st.floats(0, 0.99), values=st.lists(st.floats(-5, 5), min_size=1, max_size=30))
def test_the_dual_sees_the_indicator_minus_the_rate_and_the_primal_the_violation(rate, values):
    constraint = Constraint(d=shift, margin=FixedMargin(0.5), violation_rate=rate)
    out = torch.tensor(values, dtype=torch.float64, requires_grad=True)
    observation = constraint.observe(out, torch.zeros_like(out))
    assert torch.equal(observation.violation, out - 0.5)
    expected = (out.detach() > 0.5).double() - rate
    assert torch.equal(observation.strict_violation, expected) and not observation.strict_violation.requires_grad


@settings(max_examples=3, deadline=None)
@given(rate=st.sampled_from([0.1, 0.2, 0.3]), seed=st.integers(0, 100))
def test_a_rate_constraint_lands_on_the_quantile(rate, seed):
    """max theta s.t. P(theta > u) <= alpha: the optimum is the alpha-quantile of u (numpy as the reference);
    the per-sample constraint theta <= u_i for every i would pin theta to min(u)."""
    u = torch.from_numpy(np.random.default_rng(seed).normal(size=4000))
    theta = torch.nn.Parameter(torch.zeros((), dtype=torch.float64))
    constraint = Constraint(d=shift, name="below", violation_rate=rate)
    pd = PrimalDual(torch.optim.SGD([theta], lr=0.02), {constraint: ScalarMultiplier(init=0.0).double()}, dual_lr=0.5)
    generator = torch.Generator().manual_seed(seed)
    trace = []
    for step in range(1500):
        batch = u[torch.randint(0, len(u), (256,), generator=generator)]

        def closure(batch=batch):
            return -theta, [constraint.observe(theta.expand(len(batch)), batch)]

        pd.step(closure)
        if step >= 800:
            trace.append(theta.item())
    lower, upper = np.quantile(u.numpy(), [rate - 0.03, rate + 0.03])
    assert lower <= np.mean(trace) <= upper, (np.mean(trace), np.quantile(u.numpy(), rate))
