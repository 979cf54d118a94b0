"""A bound one group cannot meet: a fixed bound, a penalty, and a resilient relaxation, against cvxpy.

Linear regression of disease progression from 10 clinical features (scikit-learn's diabetes data, all 442
patients, standardized), with a bounded group loss over the three blood-pressure tertiles (column 3):

    E[(f(x) - y)^2 | tertile = a] <= c,   c = 0.50 for every tertile.

No linear model meets the bound for the highest tertile: fitted on that tertile alone, least squares reaches
0.511. The other two tertiles are within it. Three ways to train (full batch, float64, the same SGD primal):

1. **the fixed bound** (`bounded_group_loss(3, c)`): the problem is infeasible, so the lambdas grow without end
   (the dual step is the violation, which never reaches 0) until the primal step they scale overflows;
2. **a penalty** w * sum_a relu(MSE_a - c) for several w: each w gives another model, and none says which
   trade-off the problem itself implies; the user tunes w;
3. **the resilient relaxation** (`bounded_group_loss(3, c, relax=Quadratic(alpha))`, Hounie et al. 2023): each
   tertile's bound may relax by u_a >= 0 at a price alpha u_a^2 / 2. lambda settles, and u_a = lambda_a / alpha;
   cvxpy's solution of min_{theta, u >= 0} MSE(theta) + alpha/2 |u|^2 s.t. MSE_a(theta) <= c + u_a is the
   reference, and the trained u matches it.

    python examples/resilient_fairness.py [--steps 3000] [--alpha 20] [--fixed-lr 0.05] \\
        [--plot docs/figures/resilient_fairness.png]

Prints each fit's per-tertile MSE, lambda and u, and cvxpy's u, lambda and MSEs; with --plot, lambda over the
steps for the fixed bound and the relaxation, and the per-tertile MSEs of every fit.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional

import torch
from sklearn.datasets import load_diabetes

from constrained import PrimalDual, Quadratic, bounded_group_loss

BOUND = 0.50
PENALTY_WEIGHTS = (0.1, 0.3, 1.0)  # larger weights need a smaller step than 0.05: SGD diverges at w = 3


def diabetes_tertiles() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x [442, 10] standardized, y [442] standardized, tertile of blood pressure [442] in {0, 1, 2})."""
    data = load_diabetes()
    x = torch.tensor(data.data, dtype=torch.float64)
    x = (x - x.mean(0)) / x.std(0)
    y = torch.tensor(data.target, dtype=torch.float64)
    y = (y - y.mean()) / y.std()
    pressure = torch.tensor(data.data[:, 3], dtype=torch.float64)
    tertile = torch.bucketize(pressure, torch.quantile(pressure, torch.tensor([1 / 3, 2 / 3], dtype=torch.float64)))
    return x, y, tertile


def group_mse(model: torch.nn.Module, x, y, groups) -> list[float]:
    """The mean squared error of each group (3 values)."""
    with torch.no_grad():
        error = (model(x).squeeze(1) - y).pow(2)
    return [float(error[groups == a].mean()) for a in range(3)]


def own_fit_mse(x, y, groups, a: int) -> float:
    """The least MSE any linear model reaches on group a: least squares fitted on that group alone."""
    rows = groups == a
    design = torch.cat([x[rows], torch.ones(int(rows.sum()), 1, dtype=x.dtype)], dim=1)
    solution = torch.linalg.lstsq(design, y[rows, None]).solution
    return float((design @ solution).squeeze(1).sub(y[rows]).pow(2).mean())


def fit(x, y, groups, steps: int, relax=None, lr: float = 0.05) -> tuple[torch.nn.Module, list[list[float]], list[float],
                                                                        Optional[int]]:
    """PrimalDual on the bounded group loss (SGD at `lr`, dual lr 0.5): (model, lambda per step, final u, the
    step at which training stopped on a non-finite value, or None)."""
    torch.manual_seed(0)
    model = torch.nn.Linear(x.shape[1], 1).double()
    constraint = bounded_group_loss(3, BOUND, name="tertile_mse", relax=relax)
    multiplier = constraint.multiplier().double()
    pd = PrimalDual(torch.optim.SGD(model.parameters(), lr=lr), {constraint: multiplier}, dual_lr=0.5)

    def closure():
        losses = (model(x).squeeze(1) - y).pow(2)
        return losses.mean(), [constraint.observe(losses, groups)]

    trace, failed = [], None
    for step in range(steps):
        try:
            pd.step(closure)
        except FloatingPointError:  # PrimalDual stops before an update that would write non-finite weights
            failed = step
            break
        trace.append(multiplier.weight.detach().flatten().tolist())
    final = torch.tensor(trace[-1], dtype=torch.float64)
    u = relax.relaxation(final, torch.zeros_like(final)).tolist() if relax is not None else [0.0, 0.0, 0.0]
    return model, trace, u, failed


def fit_penalty(x, y, groups, steps: int, weight: float) -> torch.nn.Module:
    """Plain SGD on MSE + weight * sum_a relu(MSE_a - c): a penalty with a weight the user picks."""
    torch.manual_seed(0)
    model = torch.nn.Linear(x.shape[1], 1).double()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    for _ in range(steps):
        losses = (model(x).squeeze(1) - y).pow(2)
        per_group = torch.stack([losses[groups == a].mean() for a in range(3)])
        loss = losses.mean() + weight * torch.relu(per_group - BOUND).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model


def cvxpy_reference(x, y, groups, alpha: float) -> dict:
    """cvxpy's (Clarabel) solution of min MSE + alpha/2 |u|^2 s.t. MSE_a <= c + u_a, u >= 0: u, lambda, MSEs."""
    import cvxpy as cp
    import numpy as np

    design = np.c_[x.numpy(), np.ones(len(y))]
    target, labels = y.numpy(), groups.numpy()
    theta, u = cp.Variable(design.shape[1]), cp.Variable(3, nonneg=True)
    mse = [cp.sum_squares(design[labels == a] @ theta - target[labels == a]) / int((labels == a).sum()) for a in range(3)]
    rows = [mse[a] <= BOUND + u[a] for a in range(3)]
    objective = cp.sum_squares(design @ theta - target) / len(target) + alpha / 2 * cp.sum_squares(u)
    cp.Problem(cp.Minimize(objective), rows).solve(solver=cp.CLARABEL)
    return {"u": [float(v) for v in u.value], "lambda": [float(np.ravel(r.dual_value)[0]) for r in rows],
            "mse": [float(m.value) for m in mse]}


def plot(path: Path, fixed_trace, relaxed_trace, rows: list[tuple[str, list[float]]], alpha: float) -> None:
    from lore.plotting import finish_axes, new_figure, save_figure

    fig, axes = new_figure(1, 2, figsize=(11, 4))
    fixed_trace = [t for t in fixed_trace if max(t) < 10]  # a diverged fit's last steps would flatten the rest
    rows = [(name, mse) for name, mse in rows if all(m == m for m in mse)]  # no bars for a diverged fit
    for a in range(3):
        axes[0].plot([t[a] for t in fixed_trace], linestyle="--", color=f"C{a}", label=f"tertile {a}, fixed bound")
        axes[0].plot([t[a] for t in relaxed_trace], color=f"C{a}", label=f"tertile {a}, resilient (alpha {alpha:g})")
    axes[0].set(title="lambda per tertile (dashed: the fixed bound, until it diverges)", xlabel="step",
                ylabel="lambda", xscale="log")
    width = 0.8 / len(rows)
    for index, (name, mse) in enumerate(rows):
        axes[1].bar([a + (index - (len(rows) - 1) / 2) * width for a in range(3)], mse, width, label=name)
    axes[1].axhline(BOUND, color="black", linewidth=1, label=f"bound c = {BOUND:g}")
    axes[1].set(title="training MSE per tertile", xticks=range(3), xticklabels=["low bp", "middle bp", "high bp"],
                ylim=(0.35, 0.6))
    finish_axes(*axes)
    save_figure(fig, path)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=3000, help="full-batch steps per fit (default 3000)")
    parser.add_argument("--alpha", type=float, default=20.0, help="price of the relaxation, h(u) = alpha u^2 / 2")
    parser.add_argument("--fixed-lr", type=float, default=0.05,
                        help="primal SGD step of the fixed-bound fit (default 0.05, the others'; smaller steps only "
                        "postpone its failure, as lambda keeps growing)")
    parser.add_argument("--plot", type=Path, default=None, help="write the figure here (PNG)")
    args = parser.parse_args(argv)
    if args.steps < 4 or not args.alpha > 0 or not args.fixed_lr > 0:
        parser.error(f"--steps must be >= 4, --alpha and --fixed-lr > 0; got {args.steps}, {args.alpha}, {args.fixed_lr}")
    x, y, groups = diabetes_tertiles()
    print(f"bound c = {BOUND:g} per blood-pressure tertile; the least MSE a linear model reaches on each tertile "
          "alone: " + ", ".join(f"{own_fit_mse(x, y, groups, a):.4f}" for a in range(3)))
    reference = cvxpy_reference(x, y, groups, args.alpha)
    fixed, fixed_trace, _, fixed_failed = fit(x, y, groups, args.steps, lr=args.fixed_lr)
    relaxed, relaxed_trace, u, relaxed_failed = fit(x, y, groups, args.steps, relax=Quadratic(args.alpha))
    if relaxed_failed is not None:
        raise SystemExit(f"the resilient fit stopped on a non-finite value at step {relaxed_failed}")
    rows = [("fixed bound", group_mse(fixed, x, y, groups) if fixed_failed is None else [float("nan")] * 3),
            *[(f"penalty w = {w:g}", group_mse(fit_penalty(x, y, groups, args.steps, w), x, y, groups))
              for w in PENALTY_WEIGHTS],
            (f"resilient, alpha = {args.alpha:g}", group_mse(relaxed, x, y, groups)),
            ("cvxpy (resilient)", reference["mse"])]
    print(f"\ntraining MSE per tertile after {args.steps} steps:")
    for name, mse in rows:
        print(f"  {name:<24}" + ("diverged" if name == "fixed bound" and fixed_failed is not None
                                 else "  ".join(f"{m:.4f}" for m in mse)))
    counts = [len(fixed_trace) * k // 4 for k in (1, 2, 3, 4)]
    values = [f"{fixed_trace[n - 1][2]:.3f}" for n in counts]
    if fixed_failed is None:
        ending = " (it keeps growing: no model meets the bound)"
    else:  # the last entries are already blown up: say where it stopped instead
        values[-1] = "overflow"
        ending = (f"; the primal step, scaled by the lambdas, diverged and PrimalDual stopped at step {fixed_failed} "
                  "before writing non-finite weights")
    print(f"\nfixed bound: the top tertile's lambda after {', '.join(map(str, counts))} steps: {', '.join(values)}"
          + ending)
    print(f"resilient: lambda {', '.join(f'{v:.4f}' for v in relaxed_trace[-1])}; cvxpy "
          f"{', '.join(f'{v:.4f}' for v in reference['lambda'])}")
    print(f"resilient: u = lambda / alpha {', '.join(f'{v:.4f}' for v in u)}; cvxpy "
          f"{', '.join(f'{v:.4f}' for v in reference['u'])}; largest difference "
          f"{max(abs(a - b) for a, b in zip(u, reference['u'])):.1e}")
    if args.plot is not None:
        plot(args.plot, fixed_trace, relaxed_trace, rows[:-1], args.alpha)
        print(f"wrote {args.plot}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
