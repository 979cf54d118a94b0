"""PrimalDual: schedule, reports, nonnegativity, state dicts, hand-computed steps, bad input."""

from __future__ import annotations

import contextlib
import copy

import hypothesis.strategies as st
import pytest
import torch
from hypothesis import given, settings

from constrained import (
    Constraint,
    FixedPenalty,
    IndexedMultiplier,
    LinearMultiplier,
    MultiplierNetwork,
    NormMargin,
    PrimalDual,
    ScalarMultiplier,
    sq_l2,
)

CLEAN = Constraint(d=sq_l2, margin=NormMargin(0.1), name="clean")


def tiny_problem(seed=0, batch=8, dim=4):
    g = torch.Generator().manual_seed(seed)
    model = torch.nn.Linear(dim, dim)
    with torch.no_grad():
        model.weight.copy_(torch.eye(dim) + 0.3 * torch.randn(dim, dim, generator=g))
        model.bias.zero_()
    x = torch.randn(batch, dim, generator=g)
    target = torch.randn(batch, dim, generator=g)
    return model, x, target


def make_closure(model, x, target, constraint=CLEAN, **observe):
    def closure():
        out = model(x)
        return (out - target).pow(2).sum(1).mean(), [constraint.observe(out, x, **observe)]

    return closure


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


def multiplier_of(kind: str):
    """A multiplier of `kind` for `tiny_problem` (8 samples, 4 features), lambda 0.5 everywhere."""
    return {
        "scalar": lambda: ScalarMultiplier(0.5),
        "indexed": lambda: IndexedMultiplier(8, init=0.5),
        "linear": lambda: LinearMultiplier(4, init=0.5),
        "network": lambda: MultiplierNetwork(4, hidden=16, init=0.5),
    }[kind]()


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 1000), dual_lr=st.floats(0.01, 5.0), kind=st.sampled_from(["scalar", "indexed", "linear", "network"]))
def test_multipliers_stay_nonnegative(seed, dual_lr, kind):
    torch.manual_seed(seed)
    model, x, target = tiny_problem(seed)
    multiplier = multiplier_of(kind)
    pd = PrimalDual(torch.optim.SGD(model.parameters(), lr=1e-3), {CLEAN: multiplier}, dual_lr=dual_lr)
    closure = make_closure(model, x, target, features=x, indices=torch.arange(8))
    for _ in range(5):
        report = pd.step(closure)
        c = report.constraints["clean"]
        assert c.multiplier_mean >= 0 and c.multiplier_max >= c.multiplier_mean - 1e-6
    if kind in ("scalar", "indexed"):
        assert (multiplier.weight >= 0).all()
    else:
        assert (multiplier(x) >= 0).all()  # softplus may underflow to exactly 0 in float32


def run(pd, model, closure, n):
    return [pd.step(closure).as_dict() for _ in range(n)]


@pytest.mark.parametrize("kind", ["scalar", "network"])
def test_state_dict_round_trip_resumes_identically(kind, tmp_path):
    torch.manual_seed(0)

    def build():
        torch.manual_seed(0)
        model, x, target = tiny_problem()
        multiplier = ScalarMultiplier(0.5) if kind == "scalar" else MultiplierNetwork(4, hidden=8)
        primal = torch.optim.Adam(model.parameters(), lr=0.01)
        pd = PrimalDual(
            primal, {CLEAN: multiplier}, dual_optimizer=lambda p: torch.optim.Adam(p, lr=0.01, maximize=True),
            primal_steps_per_dual=3,
        )
        return model, primal, pd, make_closure(model, x, target, features=x)

    model, primal, pd, closure = build()
    straight = run(pd, model, closure, 8)

    model, primal, pd, closure = build()
    run(pd, model, closure, 4)  # stop in the middle of a K-cycle
    path = tmp_path / "state.pt"
    torch.save({"model": model.state_dict(), "primal": primal.state_dict(), "dual": pd.state_dict()}, path)
    model, primal, pd, closure = build()
    state = torch.load(path, weights_only=True)
    model.load_state_dict(state["model"])
    primal.load_state_dict(state["primal"])
    pd.load_state_dict(state["dual"])
    resumed = run(pd, model, closure, 4)
    assert resumed == straight[4:]


def test_load_state_dict_rejects_a_different_setup():
    model, x, target = tiny_problem()
    pd = PrimalDual(torch.optim.SGD(model.parameters(), lr=0.1), {CLEAN: ScalarMultiplier()}, primal_steps_per_dual=2)
    other = PrimalDual(torch.optim.SGD(model.parameters(), lr=0.1), {CLEAN: ScalarMultiplier()}, primal_steps_per_dual=5)
    with pytest.raises(ValueError, match="primal_steps_per_dual=2"):
        other.load_state_dict(pd.state_dict())
    with pytest.raises(ValueError, match="not a PrimalDual state dict"):
        other.load_state_dict({"foo": 1})


def test_bad_setup_is_rejected_clearly():
    model, x, target = tiny_problem()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="maximize=True"):
        PrimalDual(opt, {CLEAN: ScalarMultiplier()}, dual_optimizer=lambda p: torch.optim.SGD(p, lr=0.1))
    with pytest.raises(ValueError, match="needs a multiplier"):
        PrimalDual(opt, [CLEAN])
    with pytest.raises(ValueError, match="takes no multiplier"):
        PrimalDual(opt, {CLEAN: ScalarMultiplier()}, formulation=FixedPenalty(1.0))
    with pytest.raises(ValueError, match="primal_steps_per_dual must be >= 1, got 0"):
        PrimalDual(opt, {CLEAN: ScalarMultiplier()}, primal_steps_per_dual=0)
    with pytest.raises(ValueError, match="mode must be one of"):
        PrimalDual(opt, {CLEAN: ScalarMultiplier()}, mode="jacobi")
    twin = Constraint(d=sq_l2, name="clean")
    with pytest.raises(ValueError, match="share the name 'clean'"):
        PrimalDual(opt, {CLEAN: ScalarMultiplier(), twin: ScalarMultiplier()})


def test_bad_closures_are_rejected_clearly():
    model, x, target = tiny_problem()
    pd = PrimalDual(torch.optim.SGD(model.parameters(), lr=0.1), {CLEAN: MultiplierNetwork(4, hidden=8)})
    with pytest.raises(ValueError, match="pass features="):
        pd.step(make_closure(model, x, target))
    with pytest.raises(ValueError, match=r"features of shape \[B, 4\]"):
        pd.step(make_closure(model, x, target, features=torch.randn(8, 3)))
    other = Constraint(d=sq_l2, name="other")
    with pytest.raises(ValueError, match="does not enforce"):
        pd.step(make_closure(model, x, target, constraint=other, features=x))
    with pytest.raises(ValueError, match="scalar tensor"):
        pd.step(lambda: (torch.zeros(3), [CLEAN.observe(model(x), x, features=x)]))
    with pytest.raises(FloatingPointError, match="Lagrangian is nan"):
        pd.step(lambda: (torch.tensor(float("nan")), [CLEAN.observe(model(x), x, features=x)]))
    indexed = PrimalDual(torch.optim.SGD(model.parameters(), lr=0.1), {CLEAN: IndexedMultiplier(4)})
    with pytest.raises(ValueError, match=r"indices must lie in \[0, 4\)"):
        indexed.step(make_closure(model, x, target, indices=torch.arange(8)))


def test_report_as_dict_is_flat_floats():
    model, x, target = tiny_problem()
    pd = PrimalDual(torch.optim.SGD(model.parameters(), lr=0.1), {CLEAN: LinearMultiplier(4)})
    flat = pd.step(make_closure(model, x, target, features=x)).as_dict()
    assert {"loss", "lagrangian", "clean/violation_mean", "clean/satisfied_fraction", "clean/multiplier_max"} <= set(flat)
    assert all(isinstance(v, float) for v in flat.values())


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


@pytest.mark.parametrize("dual_lr", [float("nan"), float("inf"), -1.0])
def test_a_non_finite_or_negative_dual_lr_is_refused(dual_lr):
    model, _, _ = tiny_problem()
    with pytest.raises(ValueError, match="dual_lr must be finite and >= 0"):
        PrimalDual(torch.optim.SGD(model.parameters(), lr=0.01), {CLEAN: ScalarMultiplier()}, dual_lr=dual_lr)


def test_micro_batches_of_unequal_size_are_refused_before_any_update():
    model, x, target = tiny_problem(batch=10)
    before = copy.deepcopy(model.state_dict())
    pd = PrimalDual(torch.optim.SGD(model.parameters(), lr=0.1), {CLEAN: MultiplierNetwork(4, hidden=8)})
    closures = [make_closure(model, x[:6], target[:6], features=x[:6]),
                make_closure(model, x[6:], target[6:], features=x[6:])]
    with pytest.raises(ValueError, match=r"same number of rows .* got 6 rows, then 4"):
        pd.step_accumulated(closures)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert (pd.primal_steps, pd.dual_steps) == (0, 0)


def test_a_detached_violation_is_refused():
    model, x, target = tiny_problem()
    pd = PrimalDual(torch.optim.SGD(model.parameters(), lr=0.1), {CLEAN: ScalarMultiplier()})

    def closure():
        out = model(x)
        return (out - target).pow(2).mean(), [CLEAN.observe(out.detach(), x)]

    with pytest.raises(ValueError, match="'clean'.*carries no gradient"):
        pd.step(closure)


@settings(max_examples=25, deadline=None)
@given(scale=st.floats(1e-3, 1e3), seed=st.integers(0, 2**16))
def test_a_normalized_multiplier_network_ignores_the_scale_of_its_features(scale, seed):
    torch.manual_seed(seed)
    network = MultiplierNetwork(6, hidden=8, normalize=True)
    with torch.no_grad():
        network.head[-1].weight.normal_()  # leave the zero initialisation so that lambda varies with x
    features = torch.randn(5, 6)
    assert torch.allclose(network(features * scale), network(features), rtol=1e-4, atol=1e-6)
    raw = LinearMultiplier(6, normalize=False)
    with torch.no_grad():
        raw.head.weight.normal_()
    assert not torch.allclose(raw(features * 10), raw(features))


def _lbfgs_problem(mode: str = "alternating"):
    """min ||theta - (3, 0)||^2 s.t. ||theta||^2 <= 1: theta* = (1, 0), lambda* = 2 (KKT: 2(theta - t) + 2 lambda theta = 0)."""
    from constrained import Constraint, FixedMargin, ScalarMultiplier, sq_l2

    theta = torch.nn.Parameter(torch.zeros(2, dtype=torch.float64))
    target = torch.tensor([[3.0, 0.0]], dtype=torch.float64)
    bound = Constraint(d=sq_l2, margin=FixedMargin(1.0), name="ball")
    multiplier = ScalarMultiplier(init=0.0).double()
    optimizer = torch.optim.LBFGS([theta], max_iter=20, line_search_fn="strong_wolfe")
    pd = PrimalDual(optimizer, {bound: multiplier}, dual_lr=0.5, mode=mode)

    def closure():
        out = theta.unsqueeze(0)
        return (out - target).pow(2).sum(), [bound.observe(out, torch.zeros_like(out))]
    return theta, multiplier, pd, closure


def test_lbfgs_best_responses_reach_the_kkt_point():
    theta, multiplier, pd, closure = _lbfgs_problem()
    for _ in range(60):
        report = pd.step(closure)
    assert pd.primal.reevaluates
    torch.testing.assert_close(theta.detach(), torch.tensor([1.0, 0.0], dtype=torch.float64), atol=1e-4, rtol=0)
    assert abs(float(multiplier.weight.detach().reshape(-1)[0]) - 2.0) < 1e-3
    assert report.after_update and report.dual_updated


def test_alternating_reports_describe_the_updated_model_and_best_iterate_keeps_it():
    from constrained import BestIterate

    theta, _, pd, closure = _lbfgs_problem()
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
        theta, _, pd, closure = _lbfgs_problem(mode)
        holder = torch.nn.Module()
        holder.theta = theta
        best = selection.BestIterate(tolerance=1.0)
        copies.clear()
        for _ in range(3):
            best.step(pd, closure, holder)
        assert len(copies) == 3, mode


def test_lbfgs_with_a_grad_scaler_is_refused():
    from constrained import Constraint, FixedMargin, ScalarMultiplier, sq_l2

    theta = torch.nn.Parameter(torch.zeros(2))
    bound = Constraint(d=sq_l2, margin=FixedMargin(1.0))
    with pytest.raises(ValueError, match="LBFGS"):
        PrimalDual(torch.optim.LBFGS([theta]), {bound: ScalarMultiplier()}, scaler=torch.amp.GradScaler("cpu"))


def test_multiplier_features_that_carry_gradient_do_not_leak_dual_gradients_into_the_model():
    """lambda_w(features) is priced with fixed features: passing the model's own output as features must give the
    primal step the same update as passing it detached."""
    from constrained import Constraint, FixedMargin, MultiplierNetwork, sq_l2

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

    def compute():
        calls.append(1)
        return {"a": ConstraintReport(0.0, 0.0, 1.0, 0.0, 0.0)}

    reports = DeferredReports(("a",), compute)
    assert list(reports) == ["a"] and len(reports) == 1 and not calls
    assert reports["a"].satisfied_fraction == 1.0 and dict(reports) == {"a": reports["a"]}
    assert len(calls) == 1


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


def test_dual_lr_beside_a_dual_optimizer_is_refused_as_it_would_be_ignored():
    model, _, _ = tiny_problem()
    with pytest.raises(ValueError, match=r"dual_lr=0\.1 sets the default dual optimizer's rate, but dual_optimizer="):
        PrimalDual(torch.optim.SGD(model.parameters(), lr=0.01), {CLEAN: ScalarMultiplier()}, dual_lr=0.1,
                   dual_optimizer=lambda p: torch.optim.SGD(p, lr=0.5, maximize=True))


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
