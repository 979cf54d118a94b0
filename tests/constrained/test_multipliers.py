"""Multipliers: nonnegativity, links (the projected link against softplus), standardized features."""

from __future__ import annotations

import hypothesis.strategies as st
import torch
from hypothesis import example, given, settings
from tiny_problems import CLEAN, make_closure, multiplier_of, tiny_problem

from constrained import (
    PrimalDual,
)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 1000), dual_lr=st.floats(0.01, 5.0), kind=st.sampled_from(["scalar", "indexed", "linear", "network"]))
@example(seed=264, dual_lr=2.0, kind="network")  # diverges: the refused update ends the run
def test_multipliers_stay_nonnegative(seed, dual_lr, kind):
    torch.manual_seed(seed)
    model, x, target = tiny_problem(seed)
    multiplier = multiplier_of(kind)
    pd = PrimalDual(torch.optim.SGD(model.parameters(), lr=1e-3), {CLEAN: multiplier}, dual_lr=dual_lr)
    closure = make_closure(model, x, target, features=x, indices=torch.arange(8))
    for _ in range(5):
        try:
            report = pd.step(closure)
        except FloatingPointError:  # a large dual_lr can make the problem diverge (seed 264, dual_lr 2.0, network:
            break                   # inf gradients at step 5); the stepper refuses that update, which is correct
        c = report.constraints["clean"]
        assert c.multiplier_mean >= 0 and c.multiplier_max >= c.multiplier_mean - 1e-6
    if kind in ("scalar", "indexed"):
        assert (multiplier.weight >= 0).all()
    else:
        assert (multiplier(x) >= 0).all()  # softplus may underflow to exactly 0 in float32
