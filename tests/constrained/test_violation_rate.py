"""Rate (chance) constraints: the dual step prices the share of samples outside the margin, not its size."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from constrained import Constraint, FixedMargin, PrimalDual, ScalarMultiplier


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
