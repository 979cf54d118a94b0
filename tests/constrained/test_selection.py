"""BestIterate: keeps the best feasible iterate, never a non-finite one, copying the model once per step."""

from __future__ import annotations

import math

import pytest
import torch
from tiny_problems import lbfgs_problem

from constrained import BestIterate


def test_alternating_reports_describe_the_updated_model_and_best_iterate_keeps_it():
    from constrained import BestIterate

    theta, _, pd, closure = lbfgs_problem()
    holder = torch.nn.Module()
    holder.theta = theta
    best = BestIterate(tolerance=1.0)  # everything is feasible: the lowest objective wins
    report = best.step(pd, closure, holder)
    objective = float((theta.detach() - torch.tensor([3.0, 0.0], dtype=torch.float64)).pow(2).sum())
    assert report.after_update and report.loss == pytest.approx(objective)  # the loss after the L-BFGS step
    torch.testing.assert_close(best.best_state["theta"], theta.detach())  # not the (0, 0) it started from


def test_best_iterate_copies_the_model_once_per_step(monkeypatch):
    """Before, a step whose report described the updated iterate copied the model before and after it."""
    import constrained.selection as selection

    copies = []
    original = selection._snapshot
    monkeypatch.setattr(selection, "_snapshot", lambda model: copies.append(1) or original(model))
    for mode in ("simultaneous", "alternating"):
        theta, _, pd, closure = lbfgs_problem(mode)
        holder = torch.nn.Module()
        holder.theta = theta
        best = selection.BestIterate(tolerance=1.0)
        copies.clear()
        for _ in range(3):
            best.step(pd, closure, holder)
        assert len(copies) == 3, mode


@pytest.mark.parametrize("objective, worst", [(math.nan, 0.0), (0.5, math.nan), (math.inf, 0.0)])
def test_best_iterate_never_keeps_a_non_finite_iterate(objective, worst):
    model = torch.nn.Linear(2, 1)
    best = BestIterate()
    assert best.offer(model, 1.0, 0.0)
    with pytest.raises(ValueError, match="finite objective and worst violation"):
        best.offer(model, objective, worst)
    assert best.best_key == (0, 1.0)  # the finite iterate is still the kept one


@pytest.mark.parametrize("after", [-1, 2.5, True])
def test_best_iterate_refuses_a_meaningless_after(after):
    with pytest.raises(ValueError, match="after must be an int >= 0"):
        BestIterate(after=after)
