"""Margins, the violation's sign and value, and the paper's App. F cosine bound."""

from __future__ import annotations

import math

import hypothesis.strategies as st
import pytest
import torch
from hypothesis import assume, given, settings

from constrained import Constraint, EntropyMargin, FixedMargin, NormMargin, kl_div, sq_l2


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


def test_margins_values():
    ref = torch.tensor([[3.0, 4.0], [1.0, 0.0]])
    assert NormMargin(0.5)(ref).tolist() == [12.5, 0.5]
    assert FixedMargin(0.25)(ref).tolist() == [0.25, 0.25]
    uniform = torch.zeros(2, 4)
    assert EntropyMargin(2.0)(uniform).tolist() == pytest.approx([2 * math.log(4)] * 2)
    confident = torch.tensor([[100.0, 0.0, 0.0]])
    assert EntropyMargin(1.0)(confident).item() == pytest.approx(0.0, abs=1e-6)


def test_margin_carries_no_gradient():
    ref = torch.randn(3, 4, requires_grad=True)
    assert not NormMargin(0.1)(ref).requires_grad
    assert not EntropyMargin(0.1)(ref).requires_grad


@pytest.mark.parametrize("factory", [NormMargin, EntropyMargin, FixedMargin])
@pytest.mark.parametrize("bad", [-0.1, float("nan"), float("inf")])
def test_bad_rho_is_rejected(factory, bad):
    with pytest.raises(ValueError, match=r"must be finite and >= 0, got"):
        factory(bad)


def test_non_number_rho_is_rejected():
    with pytest.raises(TypeError, match="rho must be a real number"):
        NormMargin("0.1")


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


def test_observation_checks_features_and_indices():
    c = Constraint(d=sq_l2, margin=NormMargin(0.1))
    out, ref = torch.randn(4, 3), torch.randn(4, 3)
    with pytest.raises(ValueError, match="batch size 4"):
        c.observe(out, ref, features=torch.randn(3, 8))
    with pytest.raises(TypeError, match="int64"):
        c.observe(out, ref, indices=torch.arange(4).int())
    with pytest.raises(ValueError, match=r"shape \[B\]=\[4\]"):
        c.observe(out, ref, indices=torch.arange(5))


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
