"""A fairness constraint with the same API: a per-group loss bound on scikit-learn's diabetes data.

Linear regression of disease progression from 10 clinical features (442
patients, bundled with scikit-learn). Ordinary least squares (solved exactly)
serves one group worse than the other; here we require, for each sex s,

    E[(f(x) - y)^2 | sex = s] <= c

written as the per-sample constraint `Constraint(d=sq_l2, margin=FixedMargin(c))`
with a multiplier indexed by group (`IndexedMultiplier(2)`, indices = the
sex of each patient), so each group gets its own lambda. The model is linear;
c lies halfway between the least-squares model's worst-group training MSE and
the best MSE any linear model reaches on that group (its own least-squares
fit), so the constraint is feasible and must move the fit towards that group. Prints train and
held-out MSE per group for both models.

    python examples/fairness_constraint.py [--steps 2000]
"""

from __future__ import annotations

import argparse

import torch
from sklearn.datasets import load_diabetes

from constrained import Constraint, FixedMargin, IndexedMultiplier, PrimalDual, sq_l2


def group_mse(model, x, y, group):
    with torch.no_grad():
        error = (model(x) - y).pow(2).squeeze(1)
    return [error[group == g].mean().item() for g in (0, 1)] + [error.mean().item()]


def fit(x, y, group, steps, constraint=None, margin=None):
    torch.manual_seed(0)
    model = torch.nn.Linear(x.shape[1], 1)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    if constraint is None:  # ordinary least squares, solved exactly
        solution = torch.linalg.lstsq(torch.cat([x, torch.ones(len(x), 1)], dim=1), y).solution
        with torch.no_grad():
            model.weight.copy_(solution[:-1].T)
            model.bias.copy_(solution[-1])
        return model, None
    pd = PrimalDual(optimizer, {constraint: IndexedMultiplier(2)}, dual_lr=5e-4, primal_steps_per_dual=1)

    def closure():
        out = model(x)
        return (out - y).pow(2).mean(), [constraint.observe(out, y, indices=group)]

    for _ in range(steps):
        pd.step(closure)
    return model, pd.multiplier(constraint.name).weight.detach().flatten().tolist()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=4000)
    args = parser.parse_args()

    data = load_diabetes()
    x = torch.tensor(data.data, dtype=torch.float32)
    y = torch.tensor(data.target, dtype=torch.float32)[:, None]
    y = (y - y.mean()) / y.std()
    group = (x[:, 1] > 0).long()  # column 1 is sex (two standardised values)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    train, test = order[:330], order[330:]

    plain, _ = fit(x[train], y[train], group[train], args.steps)
    per_group = group_mse(plain, x[train], y[train], group[train])[:2]
    worst = int(per_group[1] > per_group[0])
    alone, _ = fit(x[train][group[train] == worst], y[train][group[train] == worst], None, 0)  # best any linear model can do
    best = group_mse(alone, x[train], y[train], group[train])[worst]
    bound = (per_group[worst] + best) / 2
    fair = Constraint(d=sq_l2, margin=FixedMargin(bound), name="group_mse")
    constrained_model, lambdas = fit(x[train], y[train], group[train], args.steps, constraint=fair)

    print(f"worst group: sex={worst}, training MSE {per_group[worst]:.4f} (least squares), {best:.4f} at best (fitted alone); "
          f"bound c = {bound:.4f}, halfway; final lambda per group = "
          + ", ".join(f"{v:.3f}" for v in lambdas))
    print(f"{'model':<14}{'split':<9}{'MSE sex=0':>11}{'MSE sex=1':>11}{'overall':>9}{'worst group':>13}")
    for name, model in (("unconstrained", plain), ("constrained", constrained_model)):
        for split, idx in (("train", train), ("held-out", test)):
            g0, g1, overall = group_mse(model, x[idx], y[idx], group[idx])
            print(f"{name:<14}{split:<9}{g0:>11.4f}{g1:>11.4f}{overall:>9.4f}{max(g0, g1):>13.4f}")


if __name__ == "__main__":
    main()
