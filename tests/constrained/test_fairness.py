"""The named fairness constraints, against fairlearn's moments."""

from __future__ import annotations


import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from constrained import (
    GroupConstraint,
    demographic_parity,
    equal_opportunity,
    equalized_odds,
    parity_difference,
)


def fairlearn_gamma(moment, predictions, labels, groups):
    moment.load_data(np.zeros((len(labels), 1)), labels, sensitive_features=groups)
    return moment.gamma(lambda X: predictions)


@settings(max_examples=25, deadline=None)
@given(data=st.lists(st.tuples(st.integers(0, 2), st.integers(0, 1), st.integers(0, 1)), min_size=12, max_size=60))
def test_parity_helpers_agree_with_fairlearns_moments(data):
    from fairlearn.metrics import demographic_parity_difference
    from fairlearn.reductions import DemographicParity, EqualizedOdds

    groups = np.array([d[0] for d in data])
    labels = np.array([d[1] for d in data])
    predictions = np.array([d[2] for d in data], dtype=float)
    if len(set(groups)) < 2 or len(set(labels[groups == groups[0]])) < 1:
        return
    g, y, p = torch.tensor(groups), torch.tensor(labels), torch.tensor(predictions)
    ours, cells = demographic_parity(3, 0.0).group_means(p, g)
    gamma = fairlearn_gamma(DemographicParity(), predictions, labels, groups)
    for value, cell in zip(ours.tolist(), cells.tolist()):
        assert value == pytest.approx(gamma[("+", "all", cell)], abs=1e-9)
    assert parity_difference(p, g, 3) == pytest.approx(gamma.abs().max(), abs=1e-9)
    rates = GroupConstraint(3).group_means(p, g)[0]
    assert float(rates.max() - rates.min()) == pytest.approx(demographic_parity_difference(labels, predictions, sensitive_features=groups))
    if all(((groups == a) & (labels == v)).any() for a in set(groups) for v in (0, 1)):
        odds, cells = equalized_odds(3, 0.0).group_means(p, g, strata=y)
        gamma = fairlearn_gamma(EqualizedOdds(), predictions, labels, groups)
        for value, cell in zip(odds.tolist(), cells.tolist()):
            assert value == pytest.approx(gamma[("+", f"label={cell // 3}", cell % 3)], abs=1e-9)


def test_equal_opportunity_conditions_on_positive_labels():
    eo = equal_opportunity(2, 0.0)
    scores = torch.tensor([1.0, 1.0, -1.0, -1.0, 1.0, -1.0])
    groups, labels = torch.tensor([0, 0, 0, 1, 1, 1]), torch.tensor([1, 0, 1, 1, 1, 0])
    observation = eo.observe_scores(scores, groups, labels)
    # among y = 1: group 0 has {1, -1} -> TPR 0.5; group 1 has {-1, 1} -> 0.5; overall 0.5: parity holds exactly
    assert observation.strict_violation.abs().max().item() == pytest.approx(0.0)
    with pytest.raises(ValueError, match="needs labels"):
        eo.observe_scores(scores, groups)
