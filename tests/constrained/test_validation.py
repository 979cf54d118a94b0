"""constrained.validation: each check names the argument and what is wrong with it, and passes good input through."""

from __future__ import annotations

import math

import pytest
import torch

from constrained.validation import check_float_tensor, check_nonnegative_finite, check_pair, check_positive_int


@pytest.mark.parametrize("value, error, needle", [
    ([1.0, 2.0], TypeError, "x must be a torch.Tensor, got list"),
    (torch.tensor([True, False]), TypeError, "x must be a real floating-point tensor, got dtype torch.bool"),
    (torch.tensor([1, 2]), TypeError, "got dtype torch.int64"),
    (torch.tensor(1.0), ValueError, r"x must have at least 1 dimension\(s\) \[B, ...\], got shape \(\)"),
    (torch.zeros(0, 3), ValueError, r"x is an empty batch \(shape \(0, 3\)\)"),
])
def test_check_float_tensor_names_the_argument_and_the_fault(value, error, needle):
    with pytest.raises(error, match=needle):
        check_float_tensor(value, "x")


def test_check_float_tensor_passes_good_input_through():
    x = torch.zeros(2, 3)
    assert check_float_tensor(x, "x") is x
    assert check_float_tensor(torch.zeros(0), "x", allow_empty=True).shape == (0,)


def test_check_pair_refuses_mismatched_shapes():
    with pytest.raises(ValueError, match=r"out \(2, 3\) and ref \(2, 4\)"):
        check_pair(torch.zeros(2, 3), torch.zeros(2, 4))
    check_pair(torch.zeros(2, 3), torch.ones(2, 3))


@pytest.mark.parametrize("value, error", [(True, TypeError), ("1", TypeError), (-1e-9, ValueError), (math.nan, ValueError),
                                          (math.inf, ValueError)])
def test_check_nonnegative_finite_refuses(value, error):
    with pytest.raises(error, match="rate must be"):
        check_nonnegative_finite(value, "rate")


def test_check_nonnegative_finite_and_positive_int_accept():
    assert check_nonnegative_finite(0, "rate") == 0.0 and isinstance(check_nonnegative_finite(2, "rate"), float)
    assert check_positive_int(3, "k") == 3


@pytest.mark.parametrize("value, error", [(True, TypeError), (2.0, TypeError), (0, ValueError), (-3, ValueError)])
def test_check_positive_int_refuses(value, error):
    with pytest.raises(error, match="k must be"):
        check_positive_int(value, "k")
