"""PrimalDual: the K:1 schedule, hand-computed steps, simultaneous and alternating modes, micro-batches, the around_dual hook."""

from __future__ import annotations

import contextlib
import copy

import pytest
import torch
from tiny_problems import CLEAN, make_closure, tiny_problem

from constrained import (
    Constraint,
    FixedPenalty,
    IndexedMultiplier,
    MultiplierNetwork,
    PrimalDual,
    ScalarMultiplier,
    sq_l2,
)


@pytest.mark.parametrize("k", [1, 3])
def test_dual_step_every_k_primal_steps(k):
    model, x, target = tiny_problem()
    pd = PrimalDual(torch.optim.SGD(model.parameters(), lr=0.01), {CLEAN: ScalarMultiplier()}, primal_steps_per_dual=k)
    flags = [pd.step(make_closure(model, x, target)).dual_updated for _ in range(3 * k)]
    assert flags == ([False] * (k - 1) + [True]) * 3
    assert (pd.primal_steps, pd.dual_steps) == (3 * k, 3)


def test_simultaneous_step_matches_hand_computation():
    """One step of Algorithm 1 with a scalar lambda, written out with plain autograd."""
    model, x, target = tiny_problem()
    reference = copy.deepcopy(model)
    lam0, lr, dual_lr = 0.7, 0.05, 0.3
    pd = PrimalDual(
        torch.optim.SGD(model.parameters(), lr=lr), {CLEAN: ScalarMultiplier(init=lam0)}, dual_lr=dual_lr
    )
    report = pd.step(make_closure(model, x, target))

    out = reference(x)
    g = (out - x).pow(2).sum(1) - 0.1 * x.pow(2).sum(1)
    lagrangian = (out - target).pow(2).sum(1).mean() + lam0 * g.mean()
    grads = torch.autograd.grad(lagrangian, list(reference.parameters()))
    for p_new, p_old, grad in zip(model.parameters(), reference.parameters(), grads):
        assert torch.allclose(p_new, p_old - lr * grad, atol=1e-6)
    expected_lambda = max(0.0, lam0 + dual_lr * g.mean().item())
    assert pd.multiplier("clean").weight.item() == pytest.approx(expected_lambda, abs=1e-6)
    assert report.lagrangian == pytest.approx(lagrangian.item(), rel=1e-6)
    assert report.constraints["clean"].violation_mean == pytest.approx(g.mean().item(), rel=1e-5)
    assert report.constraints["clean"].satisfied_fraction == pytest.approx((g <= 0).float().mean().item())


def test_fixed_penalty_is_naive_regularization():
    """FixedPenalty(w) takes the step of f + w * E[d] (Eq. 3): the margin only shifts the value."""
    model, x, target = tiny_problem()
    reference = copy.deepcopy(model)
    pd = PrimalDual(torch.optim.SGD(model.parameters(), lr=0.05), [CLEAN], formulation=FixedPenalty(2.0))
    assert pd.dual_optimizer is None
    report = pd.step(make_closure(model, x, target))
    out = reference(x)
    loss = (out - target).pow(2).sum(1).mean() + 2.0 * (out - x).pow(2).sum(1).mean()
    loss.backward()
    for p_new, p_old in zip(model.parameters(), reference.parameters()):
        assert torch.allclose(p_new, p_old - 0.05 * p_old.grad, atol=1e-6)
    assert report.constraints["clean"].multiplier_mean == 2.0
    assert report.dual_updated


def test_alternating_uses_violations_after_the_primal_step():
    model_a, x, target = tiny_problem()
    model_b = copy.deepcopy(model_a)
    results = {}
    for mode, model in (("simultaneous", model_a), ("alternating", model_b)):
        pd = PrimalDual(torch.optim.SGD(model.parameters(), lr=0.1), {CLEAN: ScalarMultiplier(1.0)}, mode=mode, dual_lr=1.0)
        report = pd.step(make_closure(model, x, target))
        results[mode] = (report.constraints["clean"].violation_mean, pd.multiplier("clean").weight.item())
    # same primal step, so same parameters; the dual step saw different violations
    for p, q in zip(model_a.parameters(), model_b.parameters()):
        assert torch.allclose(p, q)
    with torch.no_grad():
        g_after = CLEAN.violation(model_b(x), x).mean().item()
    assert results["alternating"][0] == pytest.approx(g_after, rel=1e-5)
    assert results["alternating"][1] == pytest.approx(max(0.0, 1.0 + g_after), rel=1e-5)
    assert results["simultaneous"][1] != pytest.approx(results["alternating"][1])


@pytest.mark.parametrize("kind", ["scalar", "indexed", "network"])
@pytest.mark.parametrize("mode", ["simultaneous", "alternating"])
def test_accumulated_micro_batches_equal_one_full_batch_step(kind, mode):
    def build():
        torch.manual_seed(0)
        model, x, target = tiny_problem(batch=8)
        multiplier = {"scalar": lambda: ScalarMultiplier(0.5), "indexed": lambda: IndexedMultiplier(8, init=0.5),
                      "network": lambda: MultiplierNetwork(4, hidden=8)}[kind]()
        pd = PrimalDual(torch.optim.SGD(model.parameters(), lr=0.1), {CLEAN: multiplier}, dual_lr=0.5, mode=mode)
        return model, x, target, pd, multiplier

    def closure_for(model, x, target, rows):
        def closure():
            out = model(x[rows])
            return (out - target[rows]).pow(2).sum(1).mean(), [CLEAN.observe(out, x[rows], features=x[rows], indices=rows)]
        return closure

    model_a, x, target, pd_a, mult_a = build()
    model_b, _, _, pd_b, mult_b = build()
    everything, halves = torch.arange(8), (torch.arange(4), torch.arange(4, 8))
    for _ in range(3):
        full = pd_a.step(closure_for(model_a, x, target, everything))
        split = pd_b.step_accumulated([closure_for(model_b, x, target, rows) for rows in halves])
    for p, q in zip(list(model_a.parameters()) + list(mult_a.parameters()), list(model_b.parameters()) + list(mult_b.parameters())):
        assert torch.allclose(p, q, atol=1e-6)
    assert full.constraints["clean"].violation_mean == pytest.approx(split.constraints["clean"].violation_mean, rel=1e-5)


def test_multiplier_features_that_carry_gradient_do_not_leak_dual_gradients_into_the_model():
    """lambda_w(features) is priced with fixed features: passing the model's own output as features must give the
    primal step the same update as passing it detached."""
    from constrained import FixedMargin, MultiplierNetwork

    def one_step(detach: bool) -> torch.Tensor:
        torch.manual_seed(0)
        model = torch.nn.Linear(3, 3)
        x = torch.randn(16, 3)
        bound = Constraint(d=sq_l2, margin=FixedMargin(0.1), name="near")
        pd = PrimalDual(torch.optim.SGD(model.parameters(), lr=0.1), {bound: MultiplierNetwork(3, hidden=4)}, dual_lr=0.1)

        def closure():
            out = model(x)
            features = out.detach() if detach else out
            return out.pow(2).mean(), [bound.observe(out, torch.zeros_like(out), features=features)]
        pd.step(closure)
        return model.weight.detach().clone()

    torch.testing.assert_close(one_step(detach=False), one_step(detach=True), rtol=0, atol=0)


@pytest.mark.parametrize("mode", ["simultaneous", "alternating"])
def test_around_dual_wraps_the_dual_work_only_on_dual_steps(mode):
    """The caller's hook (e.g. a timer) is entered while the dual term is built and the dual step taken, and
    never on a primal-only step."""
    entered = []

    @contextlib.contextmanager
    def hook():
        entered.append(torch.is_grad_enabled())
        yield

    model, x, target = tiny_problem(0)
    pd = PrimalDual(torch.optim.SGD(model.parameters(), lr=1e-2), {CLEAN: ScalarMultiplier()}, dual_lr=0.5,
                    primal_steps_per_dual=3, mode=mode, around_dual=hook)
    closure = make_closure(model, x, target)
    pd.step(closure)
    pd.step(closure)
    assert entered == []
    pd.step(closure)
    assert len(entered) == 2 and pd.dual_steps == 1  # building the dual term, then the update


@pytest.mark.parametrize("mode", ["simultaneous", "alternating"])
def test_deferred_checks_take_the_eager_steps_without_reading_the_device(mode):
    """checks="deferred": the same iterates as "eager", no host read inside `step`, and the report's numbers (loss,
    Lagrangian, finite) read together once, when read."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    from host_reads import count_host_reads

    runs = {}
    for checks in ("eager", "deferred"):
        model, x, target = tiny_problem()
        torch.manual_seed(0)
        pd = PrimalDual(torch.optim.SGD(model.parameters(), lr=0.05), {CLEAN: MultiplierNetwork(4, hidden=8)},
                        primal_steps_per_dual=2, mode=mode, checks=checks)
        pd.step(make_closure(model, x, target, features=x))
        with count_host_reads() as reads:
            report = pd.step(make_closure(model, x, target, features=x))
        during = len(reads)
        with count_host_reads() as reads:
            numbers = (report.loss, report.lagrangian, report.finite)
        runs[checks] = (model, pd, report, during, len(reads), numbers)
    eager, deferred = runs["eager"], runs["deferred"]
    assert deferred[3] == 0 and deferred[4] == 1 and eager[3] >= 1 and eager[4] == 0
    assert deferred[5] == pytest.approx(eager[5], rel=1e-6)
    for a, b in zip(eager[0].parameters(), deferred[0].parameters()):
        assert torch.equal(a, b)
    for a, b in zip(eager[1].multipliers.parameters(), deferred[1].multipliers.parameters()):
        assert torch.equal(a, b)
    assert deferred[2].constraints["clean"] == eager[2].constraints["clean"]


def test_eager_checks_read_once_per_step():
    """The loss, the Lagrangian and the gradients' finiteness cross to the host in one transfer."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    from host_reads import count_host_reads

    model, x, target = tiny_problem()
    pd = PrimalDual(torch.optim.SGD(model.parameters(), lr=0.05), {CLEAN: ScalarMultiplier()})
    pd.step(make_closure(model, x, target))
    with count_host_reads() as reads:
        pd.step(make_closure(model, x, target))
    assert [name for name, _ in reads.sites] == ["tolist"], reads.sites


def test_a_deferred_step_reports_a_non_finite_value_afterwards():
    model, x, target = tiny_problem()
    pd = PrimalDual(torch.optim.SGD(model.parameters(), lr=0.05), {CLEAN: ScalarMultiplier()}, checks="deferred")
    report = pd.step(make_closure(model, x * float("nan"), target))
    assert not report.finite and report.scalars_tensor() is None  # read now
    with pytest.raises(FloatingPointError, match="non-finite value"):
        report.raise_if_not_finite()
    with pytest.raises(ValueError, match="checks must be one of"):
        PrimalDual(torch.optim.SGD(model.parameters(), lr=0.05), {CLEAN: ScalarMultiplier()}, checks="lazy")


def test_without_constraints_it_is_the_plain_optimizer_step_with_the_same_checks():
    """FARE and TeCoA step through PrimalDual too (one update path): with no constraint it equals
    torch.optim's own step bit for bit, over micro-batches too, and still refuses a non-finite loss."""
    torch.manual_seed(0)
    x, y = torch.randn(8, 3), torch.randn(8)
    plain, stepped = torch.nn.Linear(3, 1), torch.nn.Linear(3, 1)
    stepped.load_state_dict(plain.state_dict())
    reference = torch.optim.AdamW(plain.parameters(), lr=0.1)
    pd = PrimalDual(torch.optim.AdamW(stepped.parameters(), lr=0.1), {})
    for _ in range(5):
        reference.zero_grad()
        for rows in (slice(0, 4), slice(4, 8)):
            ((plain(x[rows]).squeeze(1) - y[rows]).pow(2).mean() / 2).backward()
        reference.step()
        report = pd.step_accumulated([lambda rows=rows: ((stepped(x[rows]).squeeze(1) - y[rows]).pow(2).mean(), [])
                                      for rows in (slice(0, 4), slice(4, 8))])
        assert list(report.constraints) == []
    for a, b in zip(plain.parameters(), stepped.parameters()):
        assert torch.equal(a, b)
    with pytest.raises(FloatingPointError):
        pd.step(lambda: (stepped(x).sum() * float("nan"), []))
