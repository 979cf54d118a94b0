"""Reports: flat floats, computed when read from what the step priced, released two steps later."""

from __future__ import annotations

import hypothesis.strategies as st
import pytest
import torch
from hypothesis import given, settings
from tiny_problems import CLEAN, make_closure, multiplier_of, tiny_problem

from constrained import (
    LinearMultiplier,
    PrimalDual,
)


def test_report_as_dict_is_flat_floats():
    model, x, target = tiny_problem()
    pd = PrimalDual(torch.optim.SGD(model.parameters(), lr=0.1), {CLEAN: LinearMultiplier(4)})
    flat = pd.step(make_closure(model, x, target, features=x)).as_dict()
    assert {"loss", "lagrangian", "clean/violation_mean", "clean/satisfied_fraction", "clean/multiplier_max"} <= set(flat)
    assert all(isinstance(v, float) for v in flat.values())


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 1000), kind=st.sampled_from(["scalar", "indexed", "linear", "network"]),
       later_steps=st.integers(1, 3))
def test_a_report_read_later_states_what_its_step_used(seed, kind, later_steps):
    """Reports are computed when first read: one read after further primal and dual updates (which change a
    scalar's lambda in place) must equal one read at once, and state the multiplier the step priced."""
    runs = []
    for read_at_once in (True, False):
        torch.manual_seed(seed)
        model, x, target = tiny_problem(seed)
        multiplier = multiplier_of(kind)
        pd = PrimalDual(torch.optim.SGD(model.parameters(), lr=1e-2), {CLEAN: multiplier}, dual_lr=0.5)
        closure = make_closure(model, x, target, features=x, indices=torch.arange(8))
        with torch.no_grad():
            priced = multiplier(x) if kind in ("linear", "network") else (
                multiplier(torch.arange(8)) if kind == "indexed" else multiplier())
        report = pd.step(closure)
        first = report.as_dict() if read_at_once else None
        for _ in range(later_steps):
            pd.step(closure)
        runs.append((first or report.as_dict(), priced.mean().item()))
    (at_once, priced), (later, _) = runs
    assert later == at_once
    assert later["clean/multiplier_mean"] == pytest.approx(priced, rel=1e-6)
    assert len(report.constraints) == 1 and list(report.constraints) == ["clean"]


def test_deferred_reports_compute_once_and_only_when_read():
    from constrained import ConstraintReport, DeferredReports

    calls = []

    def compute(numbers):
        calls.append(numbers)
        return {"a": ConstraintReport(0.0, 0.0, 1.0, 0.0, 0.0)}

    reports = DeferredReports(("a",), compute)
    assert list(reports) == ["a"] and len(reports) == 1 and not calls
    assert reports["a"].satisfied_fraction == 1.0 and dict(reports) == {"a": reports["a"]}
    assert calls == [None]


def test_a_report_read_later_keeps_a_multiplier_that_is_its_own_parameter():
    """A user multiplier may return its parameter itself (no copy): a report read after the in-place dual update
    must still state the lambda the step priced."""
    class RawScalar(torch.nn.Module):  # the protocol only: no library or cooper base class
        averages_constraint = True
        per_index = False
        free_sign = False

        def __init__(self):
            super().__init__()
            self.weight = torch.nn.Parameter(torch.tensor([0.5]))

        def features_of(self, observation):
            return None

        def value(self, features):
            return self.weight.view(1)  # a view of the parameter, no copy

        def bind(self, equality):
            pass

        def project_(self):
            with torch.no_grad():
                self.weight.clamp_(min=0)

    model, x, target = tiny_problem(0)
    multiplier = RawScalar()
    pd = PrimalDual(torch.optim.SGD(model.parameters(), lr=1e-2), {CLEAN: multiplier}, dual_lr=0.5)
    closure = make_closure(model, x, target)
    report = pd.step(closure)
    assert multiplier.weight.item() != pytest.approx(0.5)  # the dual step moved lambda in place
    assert report.constraints["clean"].multiplier_mean == pytest.approx(0.5)
