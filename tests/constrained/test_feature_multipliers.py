"""`LinearMultiplier` and `MultiplierNetwork`: their links, feature scaling and standardization."""

from __future__ import annotations

import hypothesis.strategies as st
import numpy as np
import pytest
import torch
from hypothesis import given, settings

from constrained import (
    Constraint,
    LinearMultiplier,
    MultiplierNetwork,
    PrimalDual,
)
from constrained.feature_multipliers import LINKS


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


def _dual_ascent(features: torch.Tensor, violation: torch.Tensor, standardize: bool, steps: int = 150) -> torch.Tensor:
    """Adam dual ascent of E_i[lambda(x_i) g_i] on fixed per-sample violations; returns lambda on every sample."""
    torch.manual_seed(0)
    network = MultiplierNetwork(features.shape[1], hidden=64, standardize=standardize)
    if standardize:
        network.fit_standardization(features)
    optimizer = torch.optim.Adam(network.parameters(), lr=1e-2, maximize=True)
    generator = torch.Generator().manual_seed(0)
    for _ in range(steps):
        batch = torch.randint(0, len(features), (64,), generator=generator)
        optimizer.zero_grad()
        (network(features[batch]) * violation[batch]).mean().backward()
        optimizer.step()
    with torch.no_grad():
        return network(features)


@settings(max_examples=25, deadline=None)
@given(scale=st.floats(1e-3, 1e3), seed=st.integers(0, 2**16))
def test_a_normalized_multiplier_network_ignores_the_scale_of_its_features(scale, seed):
    torch.manual_seed(seed)
    network = MultiplierNetwork(6, hidden=8, normalize=True)
    with torch.no_grad():
        network.head[-1].weight.normal_()  # leave the zero initialisation so that lambda varies with x
    features = torch.randn(5, 6)
    assert torch.allclose(network(features * scale), network(features), rtol=1e-4, atol=1e-6)
    raw = LinearMultiplier(6, normalize=False)
    with torch.no_grad():
        raw.head.weight.normal_()
    assert not torch.allclose(raw(features * 10), raw(features))


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


def test_a_standardizing_multiplier_refuses_to_run_before_it_has_statistics():
    network = MultiplierNetwork(4, hidden=8, standardize=True)
    with pytest.raises(RuntimeError, match="fit_standardization"):
        network(torch.randn(3, 4))
    with pytest.raises(ValueError, match=r"\[N >= 2, 4\]"):
        network.fit_standardization(torch.randn(1, 4))
    with pytest.raises(ValueError, match="NaN or inf"):
        network.fit_standardization(torch.tensor([[0.0, 1, 2, float("nan")], [1, 2, 3, 4]]))
    with pytest.raises(ValueError, match="one of normalize and standardize"):
        MultiplierNetwork(4, normalize=True, standardize=True)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**16), shift=st.floats(-100, 100), log_scale=st.floats(-3, 3))
def test_standardized_lambda_ignores_any_per_feature_shift_and_scale(seed, shift, log_scale):
    torch.manual_seed(seed)
    features = torch.randn(50, 6, dtype=torch.float64)
    scale = torch.exp(log_scale + torch.randn(6, dtype=torch.float64))
    network = MultiplierNetwork(6, hidden=8, standardize=True).double()
    with torch.no_grad():
        network.head[-1].weight.normal_()  # so that lambda varies with x
    network.fit_standardization(features)
    before = network(features)
    network.fit_standardization(features * scale + shift)
    assert torch.allclose(network(features * scale + shift), before, rtol=1e-8, atol=1e-10)


def test_the_statistics_travel_in_the_state_dict():
    source = LinearMultiplier(3, standardize=True)
    source.fit_standardization(torch.randn(20, 3) + 5)
    target = LinearMultiplier(3, standardize=True)
    target.load_state_dict(source.state_dict())
    x = torch.randn(4, 3)
    assert torch.equal(target(x), source(x))


def test_standardized_features_let_lambda_separate_violators_that_raw_embeddings_hide():
    """Embeddings share a large common component (here an offset 10x the spread, like the digits and CLIP
    embeddings); 15 % of samples, recognisable by one feature, violate. From raw features the network's
    updates move every lambda together; standardized, lambda on violators ends several times the rest."""
    generator = torch.Generator().manual_seed(1)
    features = 3.0 + 0.3 * torch.randn(2000, 16, generator=generator)
    violators = features[:, 0] > 3.0 + 0.3 * 1.04  # ~15 % of samples
    violation = torch.where(violators, 0.05, -0.1)
    ratio = {}
    for standardize in (False, True):
        lam = _dual_ascent(features, violation, standardize)
        ratio[standardize] = (lam[violators].mean() / lam[~violators].mean()).item()
    assert ratio[True] > 3.0 and ratio[False] < 1.5, ratio
