"""Fairness constraints as values: a bounded group loss on scikit-learn's diabetes data.

Linear regression of disease progression from 10 clinical features (442
patients, bundled with scikit-learn). Ordinary least squares (solved exactly)
serves one sex worse than the other; here we require, for each sex s,

    E[(f(x) - y)^2 | sex = s] <= c

declared as one value, `bounded_group_loss(num_groups=2, bound=c)`: one
multiplier per group whose dual step is the group's *mean* violation in the
batch, whatever the batch size or the group's size. Training uses minibatches
of 32 patients, so the groups' shares vary from batch to batch; the model kept
is the best iterate of the second half that is feasible on the whole training
set (`BestIterate.offer`). c lies halfway between the
least-squares model's worst-group training MSE and the best MSE any linear
model reaches on that group (its own least-squares fit), so the constraint is
feasible and must move the fit towards that group. Prints train and held-out
MSE per group for both models, and the final multiplier of each group.

    python examples/fairness_constraint.py [--steps 3000]

For rates (demographic parity, equal opportunity, equalized odds) the same
pattern takes `demographic_parity(2, bound).observe_scores(scores, groups)`;
benchmarks/fairness.py compares both kinds with fairlearn.
"""

from __future__ import annotations

import argparse

import torch
from sklearn.datasets import load_diabetes

from constrained import BestIterate, PrimalDual, bounded_group_loss


def group_mse(model, x, y, group):
    with torch.no_grad():
        error = (model(x).squeeze(1) - y).pow(2)
    return [error[group == g].mean().item() for g in (0, 1)] + [error.mean().item()]


def least_squares(x, y):
    model = torch.nn.Linear(x.shape[1], 1)
    solution = torch.linalg.lstsq(torch.cat([x, torch.ones(len(x), 1)], dim=1), y[:, None]).solution
    with torch.no_grad():
        model.weight.copy_(solution[:-1].T)
        model.bias.copy_(solution[-1])
    return model


def fit_constrained(x, y, group, bound, steps, batch_size=32):
    torch.manual_seed(0)
    model = torch.nn.Linear(x.shape[1], 1)
    constraint = bounded_group_loss(num_groups=2, bound=bound, name="group_mse")
    multiplier = constraint.multiplier()
    pd = PrimalDual(torch.optim.Adam(model.parameters(), lr=0.01), {constraint: multiplier}, dual_lr=0.05)
    best = BestIterate()
    generator = torch.Generator().manual_seed(0)
    for step in range(steps):
        rows = torch.randint(0, len(y), (batch_size,), generator=generator)

        def closure():
            losses = (model(x[rows]).squeeze(1) - y[rows]).pow(2)
            return losses.mean(), [constraint.observe(losses, group[rows])]

        pd.step(closure)
        if step >= steps // 2 and step % 10 == 0:  # candidates judged on the whole training set, not a minibatch
            g0, g1, overall = group_mse(model, x, y, group)
            best.offer(model, overall, max(g0, g1) - bound)
    final_lambdas = multiplier.weight.detach().flatten().tolist()
    best.restore(model)
    return model, final_lambdas


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=3000)
    args = parser.parse_args()

    data = load_diabetes()
    x = torch.tensor(data.data, dtype=torch.float32)
    x = (x - x.mean(0)) / x.std(0)
    y = torch.tensor(data.target, dtype=torch.float32)
    y = (y - y.mean()) / y.std()
    group = (torch.tensor(data.data[:, 1]) > 0).long()  # column 1 is sex (two standardised values)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    train, test = order[:330], order[330:]

    plain = least_squares(x[train], y[train])
    per_group = group_mse(plain, x[train], y[train], group[train])[:2]
    worst = int(per_group[1] > per_group[0])
    members = train[group[train] == worst]
    best = group_mse(least_squares(x[members], y[members]), x[train], y[train], group[train])[worst]
    bound = (per_group[worst] + best) / 2
    constrained_model, lambdas = fit_constrained(x[train], y[train], group[train], bound, args.steps)

    print(f"worst group: sex={worst}, training MSE {per_group[worst]:.4f} (least squares), {best:.4f} at best (fitted alone); "
          f"bound c = {bound:.4f}, halfway; final lambda per group = " + ", ".join(f"{v:.3f}" for v in lambdas))
    print(f"{'model':<14}{'split':<9}{'MSE sex=0':>11}{'MSE sex=1':>11}{'overall':>9}{'worst group':>13}")
    for name, model in (("unconstrained", plain), ("constrained", constrained_model)):
        for split, idx in (("train", train), ("held-out", test)):
            g0, g1, overall = group_mse(model, x[idx], y[idx], group[idx])
            print(f"{name:<14}{split:<9}{g0:>11.4f}{g1:>11.4f}{overall:>9.4f}{max(g0, g1):>13.4f}")


if __name__ == "__main__":
    main()
