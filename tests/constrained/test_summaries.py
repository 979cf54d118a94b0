"""From observations to reports: joined over micro-batches, computed once, released two steps later."""

from __future__ import annotations

import pytest
import torch
from tiny_problems import CLEAN, make_closure, multiplier_of, tiny_problem

from constrained import (
    PrimalDual,
)


def test_kept_reports_release_their_tensors_two_steps_later():
    """A loop that keeps every step's report unread must not keep every step's tensors: a report still held two
    steps later is computed then, and its numbers are still those of its own step."""
    model, x, target = tiny_problem(0)
    pd = PrimalDual(torch.optim.SGD(model.parameters(), lr=1e-2), {CLEAN: multiplier_of("network")}, dual_lr=0.5)
    closure = make_closure(model, x, target, features=x, indices=torch.arange(8))
    kept, expected = [], []
    for _ in range(6):
        with torch.no_grad():
            expected.append(CLEAN.violation(model(x), x).mean().item())
        kept.append(pd.step(closure))
    assert [r.constraints.pending for r in kept] == [False] * 4 + [True] * 2
    assert [r.constraints["clean"].violation_mean for r in kept] == pytest.approx(expected, rel=1e-5)
