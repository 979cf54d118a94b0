"""The two evaluation passes of a step: the accumulated primal pass equals the whole batch's gradient, the dual
term rides the same backward only on a dual step, and the finiteness flag sees every part."""

from __future__ import annotations

from contextlib import nullcontext

import torch

from constrained import Constraint, Lagrangian, NormMargin, ScalarMultiplier, sq_l2
from constrained.binding import bind
from constrained.passes import accumulate, all_finite, reevaluate_for_dual

TARGET = torch.tensor([[1.0, 2.0], [3.0, -1.0], [0.5, 0.5], [-2.0, 1.0]], dtype=torch.float64)


def problem():
    theta = torch.nn.Parameter(torch.zeros(4, 2, dtype=torch.float64))
    constraint = Constraint(d=sq_l2, margin=NormMargin(0.1), name="clean")
    multiplier = ScalarMultiplier(init=0.5).double()
    bindings = {"clean": bind(constraint, multiplier, Lagrangian(), {})}

    def closure(rows):
        def evaluate():
            out = theta[rows]
            return (out - 1).pow(2).sum(1).mean(), [constraint.observe(out, TARGET[rows])]
        return evaluate

    return theta, multiplier, bindings, closure


def test_two_micro_batches_give_the_whole_batchs_primal_gradient_and_the_dual_only_when_asked():
    theta, multiplier, bindings, closure = problem()
    whole, _, _ = accumulate([closure(slice(0, 4))], bindings, Lagrangian(), 1.0, scaled=lambda x: x,
                             around_dual=None, check_finite=True)
    expected = theta.grad.clone()
    assert multiplier.weight.grad is None  # no dual step: no dual gradient
    theta.grad = None
    evaluations, values, lagrangians = accumulate([closure(slice(0, 2)), closure(slice(2, 4))], bindings, Lagrangian(),
                                                  0.5, scaled=lambda x: x, around_dual=nullcontext, check_finite=True)
    assert torch.allclose(theta.grad, expected, atol=1e-12, rtol=0)
    assert len(evaluations) == len(values) == len(lagrangians) == 2
    violation = torch.cat([e.observations["clean"].violation for e in evaluations]).detach()
    assert torch.allclose(multiplier.weight.grad.double(), violation.mean().reshape(multiplier.weight.shape), atol=1e-12)


def test_the_alternating_re_evaluation_takes_no_primal_gradient_and_ascends_only_with_an_optimizer():
    theta, multiplier, bindings, closure = problem()
    reevaluate_for_dual([closure(slice(0, 4))], bindings, Lagrangian(), 1.0, around_dual=nullcontext, ascend=False,
                        check_finite=True)
    assert theta.grad is None and multiplier.weight.grad is None
    evaluations, _ = reevaluate_for_dual([closure(slice(0, 4))], bindings, Lagrangian(), 1.0, around_dual=nullcontext,
                                         ascend=True, check_finite=True)
    assert theta.grad is None and multiplier.weight.grad is not None
    assert float(multiplier.weight.grad) == float(evaluations[0].observations["clean"].violation.mean())


def test_all_finite_reads_the_lagrangian_the_gradients_and_the_strict_violations():
    ok, nan = torch.tensor(1.0), torch.tensor(float("nan"))
    assert bool(all_finite(ok, None, ()))
    assert not bool(all_finite(nan, None, ()))
    assert not bool(all_finite(ok, torch.tensor(False), ()))
    assert bool(all_finite(ok, torch.tensor(True), ()))
