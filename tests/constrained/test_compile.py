"""A torch.compile'd model through PrimalDual makes the same updates as the eager one (slow: compiling)."""

from __future__ import annotations

import copy

import pytest
import torch

from constrained import Constraint, MultiplierNetwork, NormMargin, PrimalDual, sq_l2


@pytest.mark.slow
def test_a_compiled_model_through_primal_dual_equals_eager():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(64, 16, generator=generator)
    y = torch.randn(64, 4, generator=generator)
    torch.manual_seed(0)
    eager = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.GELU(), torch.nn.Linear(32, 4))
    reference = copy.deepcopy(eager).requires_grad_(False)
    twin = copy.deepcopy(eager)
    compiled = torch.compile(twin)
    runs = []
    for model, params in ((eager, eager.parameters()), (compiled, twin.parameters())):
        torch.manual_seed(1)
        fidelity = Constraint(d=sq_l2, margin=NormMargin(0.05), name="fidelity")
        pd = PrimalDual(torch.optim.SGD(params, lr=0.05), {fidelity: MultiplierNetwork(4, hidden=8)}, dual_lr=0.05,
                        primal_steps_per_dual=2)

        def closure(model=model, fidelity=fidelity):
            out = model(x)
            return torch.nn.functional.mse_loss(out, y), [fidelity.observe(out, reference(x), features=reference(x))]

        reports = [pd.step(closure).as_dict() for _ in range(6)]
        runs.append((reports, pd))
    # inductor may fuse and reorder float32 arithmetic: equal to float32 reassociation, not bit for bit
    for p, q in zip(eager.parameters(), twin.parameters()):
        assert torch.allclose(p, q, atol=1e-5, rtol=1e-4)
    for a, b in zip(runs[0][0], runs[1][0]):
        assert a["fidelity/multiplier_mean"] == pytest.approx(b["fidelity/multiplier_mean"], rel=1e-4)
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4)
    assert runs[1][1].dual_steps == 3
