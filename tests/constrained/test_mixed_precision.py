"""fp16 autocast through PrimalDual with a torch.amp.GradScaler: the same solution as fp32, overflowing steps
skipped on both sides together, the scaler's state saved and restored."""

from __future__ import annotations

import copy

import pytest
import torch

from constrained import Constraint, FixedMargin, PrimalDual, ScalarMultiplier, sq_l2


def _problem(seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(256, 8, generator=generator)
    y = x @ torch.randn(8, 1, generator=generator) + 0.5
    torch.manual_seed(seed)
    return x, y, torch.nn.Linear(8, 1)


def _stepper(model, scaler=None):
    bound = Constraint(d=sq_l2, margin=FixedMargin(1.0), name="small-output")  # |f(x)|^2 <= 1 on average
    return bound, PrimalDual(torch.optim.SGD(model.parameters(), lr=0.05), {bound: ScalarMultiplier()}, dual_lr=0.05,
                             scaler=scaler)


def _closure(model, bound, x, y, dtype, blow_up=1.0):
    def closure():
        with torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32):
            out = model(x)
            loss = torch.nn.functional.mse_loss(out.float(), y) * blow_up
        return loss, [bound.observe(out.float(), torch.zeros_like(out, dtype=torch.float32))]
    return closure


def test_fp16_with_a_grad_scaler_reaches_the_fp32_solution():
    x, y, model = _problem()
    reference = copy.deepcopy(model)
    bound, pd = _stepper(model, torch.amp.GradScaler("cpu", init_scale=2.0 ** 10))
    bound_ref, pd_ref = _stepper(reference)
    for _ in range(600):
        report = pd.step(_closure(model, bound, x, y, torch.float16))
        report_ref = pd_ref.step(_closure(reference, bound_ref, x, y, torch.float32))
    # fp16 keeps ~3 significant digits: the solutions agree to that, and the constraint is active in both
    for p, q in zip(model.parameters(), reference.parameters()):
        assert torch.allclose(p, q, atol=5e-3, rtol=5e-3)
    lam, lam_ref = report.as_dict()["small-output/multiplier_mean"], report_ref.as_dict()["small-output/multiplier_mean"]
    assert lam_ref > 0.1 and lam == pytest.approx(lam_ref, rel=0.02)
    assert report.skipped is False


def test_an_overflowing_step_skips_the_primal_and_the_dual_update_together():
    x, y, model = _problem()
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 16)
    bound, pd = _stepper(model, scaler)
    for _ in range(3):
        pd.step(_closure(model, bound, x, y, torch.float16))
    weights = [p.detach().clone() for p in model.parameters()]
    lam = pd.multiplier("small-output").weight.detach().clone()
    scale, dual_steps = scaler.get_scale(), pd.dual_steps
    report = pd.step(_closure(model, bound, x, y, torch.float16, blow_up=1e30))  # scaled gradients overflow fp16
    assert report.skipped and not report.dual_updated and report.as_dict()["skipped"] == 1.0
    assert all(torch.equal(p, w) for p, w in zip(model.parameters(), weights))
    assert torch.equal(pd.multiplier("small-output").weight, lam) and pd.dual_steps == dual_steps
    assert scaler.get_scale() < scale
    report = pd.step(_closure(model, bound, x, y, torch.float16))  # the next step goes through
    assert not report.skipped and report.dual_updated
    assert not all(torch.equal(p, w) for p, w in zip(model.parameters(), weights))


def test_the_scaler_state_is_part_of_the_state_dict():
    x, y, model = _problem()
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 16)
    bound, pd = _stepper(model, scaler)
    pd.step(_closure(model, bound, x, y, torch.float16, blow_up=1e30))
    state = pd.state_dict()
    _, fresh = _stepper(copy.deepcopy(model), torch.amp.GradScaler("cpu", init_scale=2.0 ** 16))
    fresh.load_state_dict(state)
    assert fresh.scaler.get_scale() == scaler.get_scale() < 2.0 ** 16
    _, plain = _stepper(copy.deepcopy(model))
    with pytest.raises(ValueError, match="GradScaler"):
        plain.load_state_dict(state)
    with pytest.raises(TypeError, match="GradScaler"):
        _stepper(model, scaler="fp16")
