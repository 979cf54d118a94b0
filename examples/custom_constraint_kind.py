"""A new constraint kind and its own multiplier, written in user code: a CVaR bound on per-sample losses.

`constrained` ships per-sample and group constraints, but `PrimalDual` only needs what the protocols in
`constrained.protocols` name, so a new kind of constraint needs no edit of the library. Here: a linear
regression whose worst-case tail must stay bounded,

    minimise  E[l_i(theta)]   subject to   CVaR_alpha(l(theta)) <= c,

where CVaR_alpha is the mean of the worst alpha-fraction of the losses (a risk-averse fit that protects a
minority of the data). Rockafellar and Uryasev's form CVaR_alpha(l) = min_t t + E[(l - t)_+] / alpha turns it
into an expectation constraint over (theta, t),

    E[ t + (l_i - t)_+ / alpha - c ] <= 0,

whose per-sample violation the `CVaRConstraint` below observes; t is a primal variable the constraint owns.
Only the mean of that violation means anything, so it is priced by one lambda: `TailPrice`, a multiplier
written here too. The problem is convex, so the primal-dual iterates reach its optimum, and the script
checks them against an exact solution by cvxpy when it is installed (`pip install cvxpy`).

    python examples/custom_constraint_kind.py
"""

from __future__ import annotations

import argparse
from typing import Any, Optional, Sequence

import numpy as np
import torch

from constrained import Observation, PrimalDual
from constrained.protocols import ConstraintKind, MultiplierKind


class CVaRConstraint:
    """CVaR_alpha(losses) <= bound, observed as t + (l_i - t)_+ / alpha - bound per sample (a ConstraintKind).

    Args:
        alpha: tail fraction in (0, 1] (0.2: the worst fifth of the samples).
        bound: c, the largest tolerated tail mean of the losses.
        name: label in reports.
    """

    kind = "inequality"
    summed = False  # per-sample entries: the Lagrangian reads their batch mean

    def __init__(self, alpha: float, bound: float, name: str = "cvar") -> None:
        if not 0 < alpha <= 1:
            raise ValueError(f"alpha must be in (0, 1], got {alpha}")
        self.alpha, self.bound, self.name = alpha, bound, name
        self.threshold = torch.nn.Parameter(torch.zeros((), dtype=torch.float64))  # t: train it with the model

    def check_multiplier(self, multiplier: Any) -> None:
        if not multiplier.averages_constraint:
            raise ValueError(f"{self.name}: a CVaR bound holds on average only; price it with one lambda")

    def report_details(self, observations: Sequence[Observation], violation: torch.Tensor) -> dict:
        # the bound holds on average, so a per-sample "satisfied" share means nothing: report whether the
        # batch's aggregate satisfies it (1.0 or 0.0) instead; any ConstraintReport field may be given here
        return {"satisfied_fraction": float(violation.mean() <= 0)}

    def observe(self, losses: torch.Tensor) -> Observation:
        """losses: [B] per-sample losses (carrying gradient) -> the observation PrimalDual enforces."""
        t = self.threshold
        return Observation(self, t + torch.relu(losses - t) / self.alpha - self.bound)


class TailPrice(torch.nn.Module):
    """One lambda >= 0 for the batch's mean violation: a plain `nn.Module` with `MultiplierKind`'s members."""

    averages_constraint = True
    per_index = False
    free_sign = False

    def __init__(self, init: float = 0.0) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.tensor([init], dtype=torch.float64))

    def features_of(self, observation: Observation) -> Optional[torch.Tensor]:
        return None  # one lambda for the batch: it reads nothing of the observation

    def value(self, features: Optional[torch.Tensor]) -> torch.Tensor:
        return self.weight  # [1]

    def bind(self, equality: bool) -> None:
        if equality:
            raise ValueError("TailPrice is >= 0: it prices inequalities only")

    def project_(self) -> None:
        with torch.no_grad():
            self.weight.clamp_(min=0.0)  # lambda >= 0 after every dual step


def regression_with_a_minority(n: int = 200, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(X [n, 3] with a bias column, y [n]): 20 % of the rows follow another linear law."""
    rng = np.random.default_rng(seed)
    x = np.c_[rng.normal(size=(n, 2)), np.ones(n)]
    minority = np.arange(n) < n // 5
    y = np.where(minority, x @ np.array([-0.6, 0.8, 1.0]), x @ np.array([1.0, -0.5, 0.2]))
    return x, y + 0.1 * rng.normal(size=n)


def tail_mean(losses: np.ndarray, alpha: float) -> float:
    """CVaR_alpha of a finite sample: the mean of its int(alpha n) largest values."""
    return float(np.sort(losses)[-int(alpha * len(losses)):].mean())


def solve(x: np.ndarray, y: np.ndarray, alpha: float, bound: float, *, steps: int = 1500, lr: float = 0.02,
          dual_lr: float = 0.2) -> tuple[np.ndarray, float]:
    """Primal-dual on the full batch from the least-squares fit; returns (theta, lambda)."""
    x_t, y_t = torch.tensor(x), torch.tensor(y)
    theta = torch.nn.Parameter(torch.tensor(np.linalg.lstsq(x, y, rcond=None)[0]))
    tail = CVaRConstraint(alpha, bound)
    price = TailPrice()
    assert isinstance(tail, ConstraintKind) and isinstance(price, MultiplierKind)
    pd = PrimalDual(torch.optim.SGD([theta, tail.threshold], lr=lr), {tail: price},
                    dual_optimizer=lambda params: torch.optim.SGD(params, lr=dual_lr, maximize=True))

    def closure():
        losses = (x_t @ theta - y_t) ** 2
        return losses.mean(), [tail.observe(losses)]

    for _ in range(steps):
        report = pd.step(closure)
    return theta.detach().numpy(), report.as_dict()["cvar/multiplier_mean"]


def exact(x: np.ndarray, y: np.ndarray, alpha: float, bound: Optional[float]) -> tuple[np.ndarray, float, float]:
    """cvxpy's solution (theta, lambda, objective); with bound None: the lowest reachable CVaR as objective."""
    import cvxpy as cp

    theta = cp.Variable(x.shape[1])
    losses = cp.square(x @ theta - y)
    k = int(alpha * len(y))
    if bound is None:
        problem = cp.Problem(cp.Minimize(cp.sum_largest(losses, k) / k))
        problem.solve()
        return theta.value, 0.0, problem.value
    problem = cp.Problem(cp.Minimize(cp.sum(losses) / len(y)), [cp.sum_largest(losses, k) / k <= bound])
    problem.solve()
    return theta.value, float(problem.constraints[0].dual_value), problem.value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--alpha", type=float, default=0.2)
    parser.add_argument("--bound", type=float, default=2.88, help="c (least squares' own CVaR here is 3.00)")
    args = parser.parse_args()
    x, y = regression_with_a_minority()
    least_squares = np.linalg.lstsq(x, y, rcond=None)[0]
    theta, lam = solve(x, y, args.alpha, args.bound)
    rows = [("least squares", least_squares, float("nan")), ("primal-dual (ours)", theta, lam)]
    try:
        reference, reference_lambda, _ = exact(x, y, args.alpha, args.bound)
        rows.append(("cvxpy (exact)", reference, reference_lambda))
    except ImportError:
        print("(pip install cvxpy to compare with the exact solution)")
    print(f"{'':<20}{'mean loss':>10}{'CVaR':>9}{'lambda':>9}   theta")
    for name, weights, multiplier in rows:
        losses = (x @ weights - y) ** 2
        print(f"{name:<20}{losses.mean():>10.4f}{tail_mean(losses, args.alpha):>9.4f}{multiplier:>9.4f}   "
              f"{np.array2string(weights, precision=4)}")


if __name__ == "__main__":
    main()
