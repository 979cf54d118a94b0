"""Standardized multiplier features: what makes lambda_w(x) vary across samples."""

from __future__ import annotations

import hypothesis.strategies as st
import pytest
import torch
from hypothesis import given, settings

from constrained import LinearMultiplier, MultiplierNetwork


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
