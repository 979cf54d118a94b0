"""The formulations' Lagrangian terms against cooper's own implementation of the same formulations (an
independent reference): values and gradients, for random multipliers and violations of both signs."""

from __future__ import annotations

import cooper
import hypothesis.strategies as st
import pytest
import torch
from cooper.formulations import utils as cooper_terms
from hypothesis import given, settings

from constrained import AugmentedLagrangian, FixedPenalty, Lagrangian
from constrained.formulations import weighted_sum

INEQUALITY, EQUALITY = cooper.ConstraintType.INEQUALITY, cooper.ConstraintType.EQUALITY


def _inputs(seed: int, n: int, dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    multiplier = torch.rand(n, generator=generator, dtype=dtype).mul(3).requires_grad_()
    violation = torch.randn(n, generator=generator, dtype=dtype).requires_grad_()
    return multiplier, violation


def _value_and_grads(term: torch.Tensor, *tensors: torch.Tensor) -> list[torch.Tensor]:
    grads = torch.autograd.grad(term, tensors, allow_unused=True)
    return [term.detach()] + [torch.zeros_like(t) if g is None else g for t, g in zip(tensors, grads)]


def _assert_same(ours: list[torch.Tensor], theirs: list[torch.Tensor]) -> None:
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(1, 40))
def test_lagrangian_terms_equal_coopers(seed: int, n: int) -> None:
    multiplier, violation = _inputs(seed, n)
    primal = Lagrangian().primal_term(multiplier, violation, equality=False)
    _assert_same(_value_and_grads(primal, multiplier, violation),
                 _value_and_grads(cooper_terms.compute_primal_weighted_violation(multiplier, violation),
                                  multiplier, violation))
    dual = Lagrangian().dual_term(multiplier, violation)
    assert dual is not None
    _assert_same(_value_and_grads(dual, multiplier, violation),
                 _value_and_grads(cooper_terms.compute_dual_weighted_violation(multiplier, violation),
                                  multiplier, violation))


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(1, 40), penalty=st.floats(0.01, 50.0),
       equality=st.booleans())
def test_augmented_lagrangian_terms_equal_coopers(seed: int, n: int, penalty: float, equality: bool) -> None:
    multiplier, violation = _inputs(seed, n)
    if equality:
        multiplier = (multiplier.detach() - 1.5).requires_grad_()  # free sign
    ours = AugmentedLagrangian(penalty).primal_term(multiplier, violation, equality=equality)
    coefficient = torch.full((n,), penalty, dtype=torch.float64)
    theirs = cooper_terms.compute_primal_quadratic_augmented_contribution(
        multiplier, coefficient, violation, EQUALITY if equality else INEQUALITY)
    assert theirs is not None
    _assert_same(_value_and_grads(ours, multiplier, violation), _value_and_grads(theirs, multiplier, violation))
    dual = AugmentedLagrangian(penalty).dual_term(multiplier, violation)
    assert dual is not None
    _assert_same(_value_and_grads(dual, multiplier, violation),
                 _value_and_grads(cooper_terms.compute_dual_weighted_violation(multiplier, violation),
                                  multiplier, violation))


def test_fixed_penalty_is_the_weighted_sum_and_has_no_dual_term() -> None:
    _, violation = _inputs(3, 7)
    term = FixedPenalty(0.7).primal_term(None, violation, equality=False)
    torch.testing.assert_close(term, 0.7 * violation.sum())
    assert FixedPenalty(0.7).dual_term(torch.ones(7), violation) is None


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_weighted_sum_any_float_dtype_and_mixed(dtype: torch.dtype) -> None:
    """The dot-product fast path and the general path agree; mixed dtypes promote instead of failing."""
    weights = torch.linspace(0, 1, 9, dtype=dtype)
    values = torch.linspace(-1, 2, 9, dtype=dtype)
    expected = (weights.double() * values.double()).sum()
    tolerance = 1e-2 if dtype in (torch.float16, torch.bfloat16) else 1e-6
    assert float(weighted_sum(weights, values)) == pytest.approx(float(expected), abs=tolerance * 9)
    assert float(weighted_sum(weights.float(), values)) == pytest.approx(float(expected), abs=tolerance * 9)
