"""The cost of `PrimalDual` itself: one constrained step against one plain optimizer step on the same closure,
and against a minimal hand-written cooper loop doing the same work.

Problem: an MLP with two hidden layers of 512 (input 128, 10 outputs), batch 512, on the CPU; the objective is
cross-entropy and one per-sample constraint ||f(x) - r(x)||^2 <= 1 against fixed reference outputs r(x).
K = 1 (a dual step every step). Three multipliers: scalar (one lambda on the mean), indexed (one lambda per
sample) and a multiplier network on the inputs. The plain step back-propagates the same objective and
constraint term with a fixed weight; the cooper loop is cooper's `SimultaneousOptimizer` with the same
multiplier, formulation and optimizers.
"""

from __future__ import annotations

import statistics

import cooper
import torch
import torch.nn.functional as F

from constrained import (Constraint, FixedMargin, IndexedMultiplier, MultiplierNetwork, PrimalDual, ScalarMultiplier,
                         sq_l2)
from timing import interleaved_samples, median_interval, relative_spread

KINDS = ("scalar", "indexed", "network")


def _setup(batch: int, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 128, generator=generator)
    y = torch.randint(0, 10, (batch,), generator=generator)
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(128, 512), torch.nn.ReLU(), torch.nn.Linear(512, 512), torch.nn.ReLU(),
                                torch.nn.Linear(512, 10))
    with torch.no_grad():
        reference = model(x) + 0.5 * torch.randn(batch, 10, generator=generator)
    return x, y, model, reference


def _multiplier(kind: str, batch: int):
    if kind == "scalar":
        return ScalarMultiplier(init=0.1)
    if kind == "indexed":
        return IndexedMultiplier(batch, init=0.1)
    return MultiplierNetwork(128, hidden=64, init=0.1)


def _dual_optimizer(params):
    """Plain dual ascent for every kind (the indexed multiplier's sparse gradients need SGD), the multi-tensor
    implementation as `PrimalDual`'s default dual optimizer uses."""
    return torch.optim.SGD(params, lr=1e-3, maximize=True, foreach=True)


def plain_step(batch: int):
    """One ordinary optimizer step on the closure's objective plus a fixed-weight constraint term."""
    x, y, model, reference = _setup(batch)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-6)

    def step():
        optimizer.zero_grad(set_to_none=True)
        out = model(x)
        (F.cross_entropy(out, y) + 0.1 * (sq_l2(out, reference) - 1.0).mean()).backward()
        optimizer.step()
    return step


def constrained_step(kind: str, batch: int):
    """One `PrimalDual.step` (K = 1) with multiplier `kind`."""
    x, y, model, reference = _setup(batch)
    bound = Constraint(d=sq_l2, margin=FixedMargin(1.0), name="fidelity")
    pd = PrimalDual(torch.optim.SGD(model.parameters(), lr=1e-6), {bound: _multiplier(kind, batch)},
                    dual_optimizer=_dual_optimizer, dual_lr=None)
    indices = torch.arange(batch)

    def closure():
        out = model(x)
        return F.cross_entropy(out, y), [bound.observe(out, reference, features=x, indices=indices)]

    return lambda: pd.step(closure)


def minimal_step(kind: str, batch: int):
    """The least a primal-dual step can do, written by hand: the multiplier's value, the primal and dual terms
    in one backward pass, both optimizer steps; no checks, no report. The floor of the overhead."""
    x, y, model, reference = _setup(batch)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-6)
    multiplier = _multiplier(kind, batch)
    dual = _dual_optimizer(list(multiplier.parameters()))
    indices = torch.arange(batch)

    def step():
        optimizer.zero_grad(set_to_none=True)
        dual.zero_grad(set_to_none=True)
        out = model(x)
        violation = sq_l2(out, reference) - 1.0
        if kind == "scalar":
            violation, lam = violation.mean().reshape(1), multiplier()
        else:
            lam = multiplier(indices if kind == "indexed" else x).reshape(-1)
        scale = 1.0 if kind != "network" else 1.0 / batch
        primal = F.cross_entropy(out, y) + (lam.detach() * violation).mean()
        (primal + scale * (lam * violation.detach()).sum()).backward()
        optimizer.step()
        dual.step()
    return step


def cooper_step(kind: str, batch: int):
    """The same step written directly against cooper: a CMP and its SimultaneousOptimizer."""
    x, y, model, reference = _setup(batch)
    multiplier = _multiplier(kind, batch)
    constraint = cooper.Constraint(constraint_type=cooper.ConstraintType.INEQUALITY,
                                   formulation_type=cooper.formulations.Lagrangian, multiplier=multiplier)
    indices = torch.arange(batch)

    class Problem(cooper.ConstrainedMinimizationProblem):
        def compute_cmp_state(self) -> cooper.CMPState:
            out = model(x)
            violation = sq_l2(out, reference) - 1.0
            if kind == "scalar":
                state = cooper.ConstraintState(violation=violation.mean().unsqueeze(0))
            else:
                features = indices if kind == "indexed" else x
                state = cooper.ConstraintState(violation=violation, constraint_features=features)
            return cooper.CMPState(loss=F.cross_entropy(out, y), observed_constraints={constraint: state})

    problem = Problem()
    optimizer = cooper.optim.SimultaneousOptimizer(problem, torch.optim.SGD(model.parameters(), lr=1e-6),
                                                   _dual_optimizer(list(multiplier.parameters())))
    return lambda: optimizer.roll()


def _burst(step, steps: int):
    """`steps` consecutive calls of `step`: one timed sample (per-call scheduler jitter averages out, and the
    interleaving of the candidates no longer evicts a model's weights from the cache between its steps)."""
    def run():
        for _ in range(steps):
            step()
    return run


def primal_dual_benchmarks(repeats: int, batch: int = 512, attempts: int = 3, steps_per_sample: int = 5) -> dict:
    """Per-step medians of every step kind, measured interleaved; ratios to the plain step and to raw cooper.

    Each sample times `steps_per_sample` consecutive steps of one candidate; `seconds` are per step. A ratio
    is the median over rounds of the ratio *within* each round (the two candidates timed next to each other,
    so a slow phase of the machine hits both), and `primal_dual_spread` gives each ratio's +- (half the
    interquartile range of the per-round ratios over their median) and `primal_dual_interval` its 95 %
    confidence interval (distribution-free, from the per-round ratios' order statistics; needs repeats >= 6).

    A PrimalDual step does strictly more work than the plain step, so a ratio below 0.9 can only be noise (a
    loaded machine): the measurement is then repeated, up to `attempts` times, and if it persists the result
    says `"valid": False` instead of presenting the impossible ratio as a finding.
    """
    if repeats < 6:
        raise ValueError(f"repeats must be >= 6 for a 95 % interval of each ratio's median, got {repeats}")
    tasks = {"plain_step": _burst(plain_step(batch), steps_per_sample)}
    for kind in KINDS:
        tasks[f"primal_dual_{kind}"] = _burst(constrained_step(kind, batch), steps_per_sample)
        tasks[f"cooper_{kind}"] = _burst(cooper_step(kind, batch), steps_per_sample)
        tasks[f"minimal_{kind}"] = _burst(minimal_step(kind, batch), steps_per_sample)
    attempt = 0
    while True:
        attempt += 1
        samples = interleaved_samples(tasks, repeats, torch.device("cpu"))

        def paired(top: str, bottom: str) -> list[float]:
            return [a / b for a, b in zip(samples[top], samples[bottom])]

        ratios = {f"{family}/{kind}": paired(f"{top}_{kind}", bottom)
                  for kind in KINDS
                  for family, top, bottom in (("primal_dual_overhead", "primal_dual", "plain_step"),
                                              ("primal_dual_over_cooper", "primal_dual", f"cooper_{kind}"),
                                              ("minimal_over_plain", "minimal", "plain_step"))}
        overhead = {kind: statistics.median(ratios[f"primal_dual_overhead/{kind}"]) for kind in KINDS}
        if min(overhead.values()) >= 0.9 or attempt == attempts:
            break

    def family(name: str) -> dict[str, float]:
        return {kind: statistics.median(ratios[f"{name}/{kind}"]) for kind in KINDS}

    return {
        "seconds": {name: statistics.median(values) / steps_per_sample for name, values in samples.items()},
        "primal_dual_overhead": overhead,
        "primal_dual_over_cooper": family("primal_dual_over_cooper"),
        "minimal_over_plain": family("minimal_over_plain"),
        "primal_dual_spread": {key: relative_spread(values) for key, values in ratios.items()},
        "primal_dual_interval": {key: list(median_interval(values)) for key, values in ratios.items()},
        "primal_dual_measurement": {"batch": batch, "repeats": repeats, "steps_per_sample": steps_per_sample,
                                    "attempts": attempt, "ratio": "median of per-round paired ratios",
                                    "valid": min(overhead.values()) >= 0.9},
    }


if __name__ == "__main__":
    import json

    print(json.dumps(primal_dual_benchmarks(repeats=20), indent=2))
