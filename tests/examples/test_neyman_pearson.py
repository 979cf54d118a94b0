"""examples/neyman_pearson.py: the false-positive-rate helper bounds the training false alarms of a classifier on
scikit-learn's breast-cancer data. The objective alone (missed cancers) is minimised by calling every tumour
malignant, so the bound is what holds the false alarms down: it binds."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from neyman_pearson import load, main, rates

from constrained import equal_false_positive_rates, false_positive_rate


@pytest.mark.slow
@pytest.mark.parametrize("alpha", [0.02, 0.05])
def test_the_training_false_positive_rate_meets_alpha(alpha):
    _, _, y_train, _ = load()
    result = main(["--alpha", str(alpha)])
    assert result["feasible"]
    false_positive_rate, true_positive_rate = result["constrained"]["train"]
    assert false_positive_rate <= alpha + 0.005
    assert false_positive_rate >= alpha - 3 / (y_train == 0).sum()  # binding: within 3 benign tumours of alpha
    assert true_positive_rate >= 0.95


def test_the_rate_helpers_observe_the_false_positive_rate_numpy_computes():
    g = torch.Generator().manual_seed(0)
    scores = torch.randn(40, generator=g, dtype=torch.float64, requires_grad=True)
    labels = (torch.rand(40, generator=g) < 0.5).long()
    groups = torch.arange(40) % 2
    fpr = false_positive_rate(0.1).observe_scores(scores, labels=labels)
    s, y = scores.detach().numpy(), labels.numpy()
    assert fpr.strict_violation.item() == pytest.approx(rates(s, y)[0] - 0.1)
    assert fpr.violation.requires_grad  # the sigmoid proxy carries the gradient
    parity = equal_false_positive_rates(2, 0.05).observe_scores(scores, groups, labels)
    negatives = y == 0
    overall = (s[negatives] > 0).mean()
    per_group = [(s[negatives & (groups.numpy() == a)] > 0).mean() - overall for a in (0, 1)]
    expected = np.array([[d - 0.05, -d - 0.05] for d in per_group]).ravel()
    assert np.allclose(np.sort(parity.strict_violation.numpy()), np.sort(expected))
    with pytest.raises(ValueError, match="groups= is needed with 2 groups"):
        equal_false_positive_rates(2, 0.05).observe_scores(scores, labels=labels)
