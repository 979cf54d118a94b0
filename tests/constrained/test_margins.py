"""Margins: values, no gradient, bad rho refused."""

from __future__ import annotations

import math

import pytest
import torch

from constrained import EntropyMargin, FixedMargin, NormMargin


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
