"""The "projected" link of feature multipliers: lambda = relu(z) with the dual gradient of projected ascent
on lambda >= 0, against the paper's softplus link whose gradient vanishes after a slack phase."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from constrained import Constraint, LinearMultiplier, MultiplierNetwork, PrimalDual
from constrained.multipliers import LINKS


@settings(max_examples=50, deadline=None)
@given(z=st.lists(st.floats(-3, 3), min_size=1, max_size=20), seed=st.integers(0, 1000))
def test_the_ascent_direction_is_dropped_only_at_the_bound_and_downward(z, seed):
    """Forward relu(z); backward: the incoming ascent direction passes where z > 0 or it points up."""
    multiplier = LinearMultiplier(1, link="projected")
    values = torch.tensor(z, dtype=torch.float32)
    with torch.no_grad():  # lambda_i = relu(z_i) through the linear head: weight 1, bias 0
        multiplier.head.weight.fill_(1.0)
        multiplier.head.bias.zero_()
    direction = torch.randn(len(z), generator=torch.Generator().manual_seed(seed))
    features = values[:, None].requires_grad_()
    lam = multiplier.forward(features)
    assert torch.equal(lam.detach(), values.clamp_min(0))
    (lam * direction).sum().backward()
    kept = (values > 0) | (direction > 0)
    expected_bias_grad = float((direction * kept).sum())
    assert multiplier.head.bias.grad is not None
    assert float(multiplier.head.bias.grad) == pytest.approx(expected_bias_grad, abs=1e-5)


def _steps_to_recover(link: str, slack_steps: int) -> int:
    """A linear multiplier priced by the rate signal: `slack_steps` steps where every sample keeps its
    constraint (signal -alpha), then every sample violates (1 - alpha); the dual steps until lambda >= 1."""
    torch.manual_seed(0)
    features = torch.randn(64, 4)
    multiplier = LinearMultiplier(4, init=1.0, link=link)
    optimizer = torch.optim.Adam(multiplier.parameters(), lr=0.05, maximize=True)
    alpha = 0.05
    for step in range(slack_steps + 2000):
        signal = -alpha if step < slack_steps else 1 - alpha
        optimizer.zero_grad()
        lam = multiplier(features)
        if step >= slack_steps and float(lam.mean()) >= 1.0:
            return step - slack_steps
        (lam * signal).mean().backward()
        optimizer.step()
    return 2000


def test_projected_recovers_at_once_whatever_the_slack_phase_softplus_does_not():
    """The softplus link accumulates a debt while slack (z -> -inf, gradient sigmoid(z) -> 0); the projected
    link stops at lambda = 0 and recovers in the same number of steps after a short or a long slack phase."""
    short, long = _steps_to_recover("projected", 20), _steps_to_recover("projected", 400)
    assert long <= short + 5, (short, long)
    softplus_long = _steps_to_recover("softplus", 400)
    assert softplus_long > 3 * long, (softplus_long, long)


@pytest.mark.parametrize("rate", [0.1, 0.3])
def test_a_rate_constraint_priced_by_a_projected_linear_multiplier_lands_on_the_quantile(rate):
    """max theta s.t. P(theta > u) <= alpha, priced by lambda = relu(w . 1 + b) (a constant feature): projected
    dual ascent as for a scalar multiplier, so the optimum is again numpy's alpha-quantile of u."""
    u = torch.from_numpy(np.random.default_rng(0).normal(size=4000))
    theta = torch.nn.Parameter(torch.zeros((), dtype=torch.float64))
    constraint = Constraint(d=lambda out, ref: (out - ref).reshape(-1), name="below", violation_rate=rate)
    multiplier = LinearMultiplier(1, init=0.0, link="projected").double()
    pd = PrimalDual(torch.optim.SGD([theta], lr=0.02), {constraint: multiplier}, dual_lr=0.25)
    generator = torch.Generator().manual_seed(0)
    trace, lam = [], []
    for step in range(1500):
        batch = u[torch.randint(0, len(u), (256,), generator=generator)]

        def closure(batch=batch):
            out = theta.expand(len(batch))
            return -theta, [constraint.observe(out, batch, features=torch.ones(len(batch), 1, dtype=torch.float64))]

        report = pd.step(closure)
        if step >= 800:
            trace.append(theta.item())
            lam.append(report.constraints["below"].multiplier_mean)
    lower, upper = np.quantile(u.numpy(), [rate - 0.03, rate + 0.03])
    assert lower <= np.mean(trace) <= upper, (np.mean(trace), np.quantile(u.numpy(), rate))
    assert np.mean(lam) > 0  # the bound is active: its price is positive


def test_bad_links_are_refused_and_init_zero_is_allowed_only_when_projected():
    with pytest.raises(ValueError, match="link"):
        MultiplierNetwork(3, link="exp")
    with pytest.raises(ValueError, match="init"):
        LinearMultiplier(3, init=0.0)
    zero = LinearMultiplier(3, init=0.0, link="projected")
    assert float(zero(torch.randn(5, 3)).max()) == 0.0
    assert LINKS == ("softplus", "projected")
