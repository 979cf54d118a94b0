"""The primal update (plain, fp16 through a GradScaler, L-BFGS) and the dual update (its optimizer and rate)."""

from __future__ import annotations

import copy

import pytest
import torch
from tiny_problems import CLEAN, lbfgs_problem, tiny_problem

from constrained import Constraint, FixedMargin, GroupConstraint, PrimalDual, ScalarMultiplier, sq_l2


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


@pytest.mark.parametrize("dual_lr", [float("nan"), float("inf"), -1.0])
def test_a_non_finite_or_negative_dual_lr_is_refused(dual_lr):
    model, _, _ = tiny_problem()
    with pytest.raises(ValueError, match="dual_lr must be finite and >= 0"):
        PrimalDual(torch.optim.SGD(model.parameters(), lr=0.01), {CLEAN: ScalarMultiplier()}, dual_lr=dual_lr)


def test_lbfgs_best_responses_reach_the_kkt_point():
    theta, multiplier, pd, closure = lbfgs_problem()
    for _ in range(60):
        report = pd.step(closure)
    assert pd.primal.reevaluates
    torch.testing.assert_close(theta.detach(), torch.tensor([1.0, 0.0], dtype=torch.float64), atol=1e-4, rtol=0)
    assert abs(float(multiplier.weight.detach().reshape(-1)[0]) - 2.0) < 1e-3
    assert report.after_update and report.dual_updated


def test_lbfgs_with_a_grad_scaler_is_refused():
    from constrained import Constraint, FixedMargin, ScalarMultiplier, sq_l2

    theta = torch.nn.Parameter(torch.zeros(2))
    bound = Constraint(d=sq_l2, margin=FixedMargin(1.0))
    with pytest.raises(ValueError, match="LBFGS"):
        PrimalDual(torch.optim.LBFGS([theta]), {bound: ScalarMultiplier()}, scaler=torch.amp.GradScaler("cpu"))


def test_dual_lr_beside_a_dual_optimizer_is_refused_as_it_would_be_ignored():
    model, _, _ = tiny_problem()
    with pytest.raises(ValueError, match=r"dual_lr=0\.1 sets the default dual optimizer's rate, but dual_optimizer="):
        PrimalDual(torch.optim.SGD(model.parameters(), lr=0.01), {CLEAN: ScalarMultiplier()}, dual_lr=0.1,
                   dual_optimizer=lambda p: torch.optim.SGD(p, lr=0.5, maximize=True))


def test_a_non_finite_gradient_behind_a_finite_lagrangian_stops_the_same_step():
    """The norm ||w|| at w = 0 has the finite value 0 and a non-finite gradient (sqrt's derivative at 0): before,
    the weights became NaN and the next step raised; now the step that would apply it stops, weights unchanged."""
    constraint = GroupConstraint(2, 0.5)
    weight = torch.nn.Parameter(torch.zeros(3))
    pd = PrimalDual(torch.optim.SGD([weight], lr=0.1), {constraint: constraint.multiplier()}, dual_lr=0.1)
    x, groups = torch.randn(8, 3), torch.arange(8) % 2

    def closure():
        return weight.pow(2).sum().sqrt(), [constraint.observe(torch.sigmoid(x @ weight), groups)]

    with pytest.raises(FloatingPointError, match="primal gradient is not finite although the Lagrangian is"):
        pd.step(closure)
    assert torch.equal(weight.detach(), torch.zeros(3)) and pd.primal_steps == 0
