"""Divergences: invariants (hypothesis), hand formulas, gradcheck, bad input."""

from __future__ import annotations

import math

import hypothesis.strategies as st
import pytest
import torch
from hypothesis import given, settings

from constrained import cosine_distance, js_div, kl_div, l1, l2, sq_l2

ALL = [sq_l2, l2, l1, cosine_distance, kl_div, js_div]
LOGIT_BASED = {kl_div, js_div}


def pair(seed: int, batch: int, dim: int, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, dim, generator=g, dtype=dtype), torch.randn(batch, dim, generator=g, dtype=dtype)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), batch=st.integers(1, 6), dim=st.integers(2, 9), scale=st.floats(0.01, 100.0))
@pytest.mark.parametrize("d", ALL, ids=lambda f: f.__name__)
def test_nonnegative_shape_b_and_zero_on_equal_inputs(d, seed, batch, dim, scale):
    out, ref = pair(seed, batch, dim)
    out, ref = out * scale, ref * scale
    value = d(out, ref)
    assert value.shape == (batch,)
    assert (value >= 0).all()
    assert torch.allclose(d(ref, ref), torch.zeros(batch, dtype=ref.dtype), atol=1e-9)


@pytest.mark.parametrize("d", [sq_l2, l2, l1, cosine_distance], ids=lambda f: f.__name__)
def test_trailing_dimensions_are_flattened(d):
    out, ref = pair(0, 3, 24)
    assert torch.allclose(d(out.reshape(3, 2, 3, 4), ref.reshape(3, 2, 3, 4)), d(out, ref))


def test_values_against_hand_formulas():
    out = torch.tensor([[3.0, 4.0], [1.0, 0.0]], dtype=torch.float64)
    ref = torch.tensor([[0.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    assert sq_l2(out, ref).tolist() == [25.0, 2.0]
    assert l2(out, ref).tolist() == pytest.approx([5.0, math.sqrt(2)])
    assert l1(out, ref).tolist() == [7.0, 2.0]
    # orthogonal vectors: cosine 0, distance 1; opposite vectors: distance 2
    assert cosine_distance(out[1:], ref[1:]).item() == pytest.approx(1.0)
    assert cosine_distance(out, -out).tolist() == pytest.approx([2.0, 2.0])
    assert cosine_distance(out, 7 * out).tolist() == pytest.approx([0.0, 0.0], abs=1e-12)


def test_kl_and_js_against_explicit_distributions():
    p = torch.tensor([[0.7, 0.2, 0.1]], dtype=torch.float64)  # reference
    q = torch.tensor([[0.2, 0.5, 0.3]], dtype=torch.float64)  # model
    expected_kl = sum(pi * math.log(pi / qi) for pi, qi in zip(p[0].tolist(), q[0].tolist()))
    # logits are log-probabilities up to a per-row constant
    assert kl_div(q.log() + 3.0, p.log() - 1.0).item() == pytest.approx(expected_kl)
    m = 0.5 * (p + q)
    expected_js = 0.5 * float((p * (p / m).log()).sum() + (q * (q / m).log()).sum())
    assert js_div(q.log(), p.log()).item() == pytest.approx(expected_js)
    assert js_div(torch.tensor([[50.0, -50.0]]), torch.tensor([[-50.0, 50.0]])).item() == pytest.approx(math.log(2), rel=1e-5)


@pytest.mark.parametrize("d", ALL, ids=lambda f: f.__name__)
def test_gradcheck_float64(d):
    out, ref = pair(1, 3, 5)
    out.requires_grad_(True)
    ref.requires_grad_(True)
    assert torch.autograd.gradcheck(d, (out, ref), eps=1e-6, atol=1e-5)


def test_l2_gradient_at_zero_is_finite():
    x = torch.ones(2, 3, requires_grad=True)
    l2(x, x.detach()).sum().backward()
    assert torch.isfinite(x.grad).all()


@pytest.mark.parametrize("d", ALL, ids=lambda f: f.__name__)
def test_bad_input_names_the_problem(d):
    out, ref = pair(0, 4, 3, dtype=torch.float32)
    with pytest.raises(ValueError, match=r"same shape.*\(4, 3\).*\(2, 3\)"):
        d(out, ref[:2])
    with pytest.raises(ValueError, match="empty batch"):
        d(out[:0], ref[:0])
    with pytest.raises(TypeError, match="floating-point.*int64"):
        d(out.long(), ref.long())
    with pytest.raises(TypeError, match="torch.Tensor"):
        d(out.tolist(), ref)


def test_logit_divergences_need_two_dimensions():
    with pytest.raises(ValueError, match=r"\[B, C\]"):
        kl_div(torch.zeros(2, 3, 4), torch.zeros(2, 3, 4))


def test_device_mismatch_is_reported():
    if not torch.cuda.is_available():
        meta = torch.zeros(2, 3, device="meta")
        with pytest.raises(ValueError, match="one device"):
            sq_l2(torch.zeros(2, 3), meta)
