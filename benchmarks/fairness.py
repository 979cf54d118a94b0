"""Group constraints of `constrained` against fairlearn's reductions, on the same data and the same bounds.

Three problems, each solved by us (a torch model trained by `PrimalDual` with a group constraint) and by
fairlearn's `ExponentiatedGradient` (Agarwal et al. 2018/2019) around scikit-learn's estimator:

- demographic parity: logistic regression on a synthetic classification set (made here, seeded) whose
  sensitive attribute shifts two of the features; constraint max_a |P(y_hat = 1 | A = a) - P(y_hat = 1)| <= bound.
- bounded group loss: linear regression on scikit-learn's diabetes data, groups = sex; constraint
  E[(f(x) - y)^2 | sex = s] <= bound for both sexes, the bound halfway between least squares' worst-group
  MSE and the smallest worst-group MSE any linear model reaches (the minimax fit): feasible, and binding.
- MLP under demographic parity: a 32-32 ReLU network on 50,000 synthetic rows with a nonlinear rule. Ours
  trains the network once, in minibatches; the reduction refits scikit-learn's MLPClassifier (same shape,
  optimizer, batch size and epochs) at every one of its iterations.

On the two small full-batch problems each of our primal steps is an L-BFGS best response to the current
multipliers (`PrimalDual` with `torch.optim.LBFGS`, mode="alternating"); the MLP uses Adam. Every number is
measured on held-out data (and the training violation on the training data); both methods' clocks start
after torch's one-time import costs (`warm_up`):

    python benchmarks/fairness.py [--json F] [--seed S] [--skip-mlp]

writes {"demographic_parity": {"ours": {"accuracy", "violation", "train_violation", "seconds"},
"fairlearn": {..., "iterations"}, "unconstrained": {...}, "bound"}, "bounded_group_loss": {"ours": {"mse",
"violation", ...}, ...}, "mlp_demographic_parity": {like demographic_parity, "epochs"}}. fairlearn's predictors
are randomized mixtures; they are evaluated through `predict` with a fixed random_state, as a user would call them.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from constrained import BestIterate, PrimalDual, bounded_group_loss, demographic_parity, parity_difference
from lore.provenance import provenance

DUAL_LR = 0.1


def _features_shifted_by_group(rng: np.random.Generator, n: int, features: int, shifts: tuple[float, float]
                               ) -> tuple[np.ndarray, np.ndarray]:
    """(group [n] in {0, 1} with P(1) = 0.4, standard normal features [n, features] whose first two are moved
    by shifts[0] and shifts[1] for group 1)."""
    group = (rng.random(n) < 0.4).astype(np.int64)
    x = rng.normal(size=(n, features))
    x[:, 0] += shifts[0] * group
    x[:, 1] += shifts[1] * group
    return group, x


def synthetic_classification(seed: int, n_train: int = 6000, n_test: int = 30000) -> dict:
    """Features correlated with a binary sensitive attribute A (P(A=1) = 0.4); labels from a noisy linear rule.

    The held-out set is large (30,000) so that held-out accuracy and parity are measured to about +-0.003
    rather than the +-0.01 of a 30 % split, which would drown the differences being compared."""
    n = n_train + n_test
    rng = np.random.default_rng(seed)
    group, x = _features_shifted_by_group(rng, n, 6, shifts=(1.2, -0.8))
    logits = 1.5 * x[:, 0] - 1.0 * x[:, 1] + 0.8 * x[:, 2] - 0.5 * x[:, 3] + rng.normal(scale=0.8, size=n)
    y = (logits > 0.4).astype(np.int64)
    train = np.arange(n) < n_train
    return {"x": x, "y": y, "group": group, "train": train}


def diabetes_by_sex(seed: int) -> dict:
    from sklearn.datasets import load_diabetes

    data = load_diabetes()
    x, y = data.data.astype(np.float64), data.target.astype(np.float64)
    y = (y - y.mean()) / y.std()
    group = (x[:, 1] > 0).astype(np.int64)  # column 1 is sex (two standardised values)
    order = np.random.default_rng(seed).permutation(len(y))
    train = np.zeros(len(y), dtype=bool)
    train[order[:330]] = True
    return {"x": x, "y": y, "group": group, "train": train}


def demographic_parity_difference(predictions: np.ndarray, group: np.ndarray) -> float:
    """max_a |E[y_hat | A = a] - E[y_hat]|: the quantity fairlearn's DemographicParity(difference_bound) bounds."""
    return parity_difference(torch.as_tensor(predictions, dtype=torch.float64), torch.as_tensor(group), 2)


def group_mse(predictions: np.ndarray, y: np.ndarray, group: np.ndarray) -> list[float]:
    return [float(np.mean((predictions[group == g] - y[group == g]) ** 2)) for g in (0, 1)]


def minimax_group_mse(x: np.ndarray, y: np.ndarray, group: np.ndarray) -> float:
    """min over linear models of the worst group's training MSE (scipy's SLSQP on min t s.t. MSE_a <= t): the
    smallest feasible bound, computed by a solver independent of both methods compared."""
    from scipy.optimize import minimize

    features = np.c_[x, np.ones(len(x))]

    def mse(w, g):
        residual = features[group == g] @ w - y[group == g]
        return residual @ residual / residual.size

    start = np.linalg.lstsq(features, y, rcond=None)[0]
    z0 = np.r_[start, max(mse(start, g) for g in (0, 1))]
    constraints = [{"type": "ineq", "fun": (lambda z, g=g: z[-1] - mse(z[:-1], g))} for g in (0, 1)]
    result = minimize(lambda z: z[-1], z0, constraints=constraints, method="SLSQP", options={"maxiter": 500, "ftol": 1e-12})
    if not result.success:
        raise RuntimeError(f"the minimax fit did not converge: {result.message}")
    return float(result.x[-1])


def _best_response_pd(model: torch.nn.Module, constraint, dual_lr: float, iterations: int) -> PrimalDual:
    """Full-batch primal-dual for a small problem: each primal step is an L-BFGS best response (`iterations`
    evaluations at most) to the current multipliers; the dual step reads the violations at the new point."""
    optimizer = torch.optim.LBFGS(model.parameters(), max_iter=iterations, line_search_fn="strong_wolfe")
    multiplier = constraint.multiplier().to(next(model.parameters()).dtype)
    return PrimalDual(optimizer, {constraint: multiplier}, dual_lr=dual_lr, mode="alternating")


def _standardised(data: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Training features (float64), their mean and std, labels and groups as tensors."""
    x, y, a = (torch.as_tensor(data[k][data["train"]]) for k in ("x", "y", "group"))
    x = x.double()
    return x, x.mean(0), x.std(0), y.double(), a


def ours_parity(data: dict, bound: float, steps: int, seed: int):
    """Logistic regression; demographic parity through the sigmoid proxy, the dual sees the true rates."""
    torch.manual_seed(seed)
    x, mean, std, y, a = _standardised(data)
    z = (x - mean) / std
    model = torch.nn.Linear(x.shape[1], 1).double()
    constraint = demographic_parity(2, bound)
    pd = _best_response_pd(model, constraint, dual_lr=2.0, iterations=8)

    def closure():
        scores = model(z).squeeze(1)
        return F.binary_cross_entropy_with_logits(scores, y), [constraint.observe_scores(scores, a)]

    best = BestIterate(tolerance=0.0, after=steps // 2)  # the best feasible iterate of the second half
    for _ in range(steps):
        best.step(pd, closure, model)
    best.restore(model)
    return lambda features: (model((torch.as_tensor(features).double() - mean) / std).squeeze(1) > 0).double().numpy()


def ours_group_loss(data: dict, bound: float, steps: int, seed: int):
    """Linear regression; each sex's mean squared error bounded."""
    torch.manual_seed(seed)
    x, mean, std, y, a = _standardised(data)
    z = (x - mean) / std  # an affine model either way; standardised inputs make the optimisation well-conditioned
    model = torch.nn.Linear(x.shape[1], 1).double()
    constraint = bounded_group_loss(2, bound)
    pd = _best_response_pd(model, constraint, dual_lr=30.0, iterations=10)

    def closure():
        losses = (model(z).squeeze(1) - y).pow(2)
        return losses.mean(), [constraint.observe(losses, a)]

    best = BestIterate(tolerance=0.0, after=steps // 2)
    for _ in range(steps):
        best.step(pd, closure, model)
    best.restore(model)
    return lambda features: model((torch.as_tensor(features).double() - mean) / std).squeeze(1).detach().numpy()


def synthetic_nonlinear(seed: int, n_train: int = 50_000, n_test: int = 50_000) -> dict:
    """10 features, two of them shifted by a binary sensitive attribute A (P(A=1) = 0.4); labels from a noisy
    rule with interactions and a periodic term, so that a small neural network beats a linear model."""
    n = n_train + n_test
    rng = np.random.default_rng(seed)
    group, x = _features_shifted_by_group(rng, n, 10, shifts=(1.0, -0.7))
    logits = (1.2 * x[:, 0] - 0.8 * x[:, 1] + 1.5 * x[:, 2] * x[:, 3] + 1.2 * np.sin(2.0 * x[:, 4])
              - 0.8 * np.abs(x[:, 5]) + 0.6 * x[:, 6] + rng.normal(scale=0.5, size=n))
    y = (logits > 0.0).astype(np.int64)
    return {"x": x, "y": y, "group": group, "train": np.arange(n) < n_train}


HIDDEN = (32, 32)
BATCH = 1000  # rows per minibatch on the MLP problem, for both methods


def mlp(features: int) -> torch.nn.Sequential:
    """The network both methods fit: `features` -> 32 -> 32 -> 1 logit, ReLU (sklearn's MLPClassifier default)."""
    return torch.nn.Sequential(torch.nn.Linear(features, HIDDEN[0]), torch.nn.ReLU(), torch.nn.Linear(*HIDDEN),
                               torch.nn.ReLU(), torch.nn.Linear(HIDDEN[1], 1))


def ours_mlp_parity(data: dict, bound: float, epochs: int, seed: int, batch_size: int = BATCH, lr: float = 5e-3,
                    dual_lr: float = 0.1, checks_per_epoch: int = 4):
    """An MLP under demographic parity: minibatch Adam through `PrimalDual`, each batch's group rates observed
    through the sigmoid proxy; the kept iterate is the best one (`checks_per_epoch` times per epoch in the second
    half) whose parity holds on the whole training set."""
    torch.manual_seed(seed)
    x, mean, std, y, a = _standardised(data)
    z, y = ((x - mean) / std).float(), y.float()
    model = mlp(x.shape[1])
    constraint = demographic_parity(2, bound)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    pd = PrimalDual(optimizer, {constraint: constraint.multiplier()}, dual_lr=dual_lr)
    best = BestIterate(tolerance=0.0)
    generator = torch.Generator().manual_seed(seed)
    batches = -(-len(y) // batch_size)
    check_every = max(1, batches // checks_per_epoch)
    for epoch in range(epochs):
        for i, batch in enumerate(torch.randperm(len(y), generator=generator).split(batch_size)):
            def closure(batch=batch):
                scores = model(z[batch]).squeeze(1)
                return (F.binary_cross_entropy_with_logits(scores, y[batch]),
                        [constraint.observe_scores(scores, a[batch])])

            pd.step(closure)
            if epoch >= epochs // 2 and (i + 1) % check_every == 0:
                with torch.no_grad():
                    scores = model(z).squeeze(1)
                gap = parity_difference((scores > 0).double(), a, 2)
                best.offer(model, float(F.binary_cross_entropy_with_logits(scores, y)), gap - bound)
    best.restore(model)
    return lambda features: (model(((torch.as_tensor(features).double() - mean) / std).float()).squeeze(1) > 0).double().numpy()


def warm_up() -> None:
    """Pays torch's one-time costs before any clock starts (the first optimizer imports torch._dynamo, ~2 s),
    as fairlearn's and scikit-learn's imports are paid before theirs: the timings compare the methods, not
    the libraries' import times."""
    param = torch.zeros(1, requires_grad=True)
    for optimizer in (torch.optim.Adam([param]), torch.optim.LBFGS([param])):
        optimizer.zero_grad()
        optimizer.step(lambda: param.pow(2).sum())


def parity_problem(data: dict, bound: float, fit_ours, estimator, seed: int) -> dict:
    """Times `fit_ours(data)` and fairlearn's ExponentiatedGradient around `estimator` (a fresh scikit-learn
    estimator) under demographic parity <= `bound`; measures both (and the unconstrained estimator) on held-out
    and training data."""
    from fairlearn.reductions import DemographicParity, ExponentiatedGradient
    from sklearn.base import clone

    tr, te = data["train"], ~data["train"]
    results = {}
    started = time.perf_counter()
    predict = fit_ours(data)
    results["ours"] = {"seconds": time.perf_counter() - started}
    started = time.perf_counter()
    reduction = ExponentiatedGradient(clone(estimator), DemographicParity(difference_bound=bound))
    reduction.fit(data["x"][tr], data["y"][tr], sensitive_features=data["group"][tr])
    results["fairlearn"] = {"seconds": time.perf_counter() - started, "iterations": len(reduction.predictors_)}
    fairlearn_predict = lambda features: reduction.predict(features, random_state=seed).astype(np.float64)  # noqa: E731
    plain = clone(estimator).fit(data["x"][tr], data["y"][tr])
    for name, fn in (("ours", predict), ("fairlearn", fairlearn_predict), ("unconstrained", plain.predict)):
        test_pred, train_pred = fn(data["x"][te]), fn(data["x"][tr])
        results.setdefault(name, {}).update({
            "accuracy": float(np.mean(test_pred == data["y"][te])),
            "violation": demographic_parity_difference(test_pred, data["group"][te]),
            "train_violation": demographic_parity_difference(train_pred, data["group"][tr]),
            "train_accuracy": float(np.mean(train_pred == data["y"][tr])),
        })
    return {**results, "bound": bound, "samples": {"train": int(tr.sum()), "test": int(te.sum())}}


def demographic_parity_problem(seed: int, bound: float, steps: int) -> dict:
    """Logistic regression under demographic parity on `synthetic_classification`."""
    from sklearn.linear_model import LogisticRegression

    return parity_problem(synthetic_classification(seed), bound, lambda data: ours_parity(data, bound, steps, seed),
                          LogisticRegression(max_iter=1000), seed)


def mlp_demographic_parity_problem(seed: int, bound: float, epochs: int) -> dict:
    """An MLP (`HIDDEN` ReLU units, Adam, `BATCH` rows per step) under demographic parity on 50,000 `synthetic_nonlinear`
    rows; fairlearn refits scikit-learn's MLPClassifier of the same shape, with the same optimizer, batch size and
    number of epochs as our whole run, at every iteration of its reduction."""
    from sklearn.neural_network import MLPClassifier

    estimator = MLPClassifier(hidden_layer_sizes=HIDDEN, max_iter=epochs, batch_size=BATCH,
                              learning_rate_init=5e-3, random_state=seed)
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # a fixed epoch budget, as ours has
        result = parity_problem(synthetic_nonlinear(seed), bound,
                                lambda data: ours_mlp_parity(data, bound, epochs, seed), estimator, seed)
    return {**result, "epochs": epochs}


def bounded_group_loss_problem(seed: int, steps: int) -> dict:
    from fairlearn.reductions import BoundedGroupLoss, ExponentiatedGradient, SquareLoss
    from sklearn.linear_model import LinearRegression

    data = diabetes_by_sex(seed)
    tr, te = data["train"], ~data["train"]
    x, y, a = data["x"], data["y"], data["group"]
    plain = LinearRegression().fit(x[tr], y[tr])
    per_group = group_mse(plain.predict(x[tr]), y[tr], a[tr])
    worst = int(np.argmax(per_group))
    bound = (per_group[worst] + minimax_group_mse(x[tr], y[tr], a[tr])) / 2
    results = {}
    started = time.perf_counter()
    predict = ours_group_loss(data, bound, steps, seed)
    results["ours"] = {"seconds": time.perf_counter() - started}
    started = time.perf_counter()
    low, high = float(y[tr].min()), float(y[tr].max())
    reduction = ExponentiatedGradient(LinearRegression(), BoundedGroupLoss(SquareLoss(low, high), upper_bound=bound))
    reduction.fit(x[tr], y[tr], sensitive_features=a[tr])
    results["fairlearn"] = {"seconds": time.perf_counter() - started}
    fairlearn_predict = lambda features: reduction.predict(features, random_state=seed).astype(np.float64)  # noqa: E731
    for name, fn in (("ours", predict), ("fairlearn", fairlearn_predict), ("unconstrained", plain.predict)):
        test_pred, train_pred = fn(x[te]), fn(x[tr])
        results.setdefault(name, {}).update({
            "mse": float(np.mean((test_pred - y[te]) ** 2)),
            "violation": max(group_mse(test_pred, y[te], a[te])),
            "train_violation": max(group_mse(train_pred, y[tr], a[tr])),
            "train_mse": float(np.mean((train_pred - y[tr]) ** 2)),
        })
    return {**results, "bound": bound, "worst_group": worst, "samples": {"train": int(tr.sum()), "test": int(te.sum())}}


def print_table(title: str, problem: dict, metric: str) -> None:
    print(title)
    print(f"{'method':<15}{metric:>10}{'violation':>11}{'train viol.':>13}{'seconds':>9}")
    for name in ("ours", "fairlearn", "unconstrained"):
        r = problem[name]
        print(f"{name:<15}{r[metric]:>10.4f}{r['violation']:>11.4f}{r['train_violation']:>13.4f}"
              f"{r.get('seconds', float('nan')):>9.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bound", type=float, default=0.02, help="demographic-parity bound")
    parser.add_argument("--steps", type=int, default=30,
                        help="our full-batch primal-dual steps on the two small problems (each an L-BFGS best response)")
    parser.add_argument("--mlp-epochs", type=int, default=16,
                        help="epochs on the MLP problem: our whole run, and each of fairlearn's MLPClassifier fits")
    parser.add_argument("--skip-mlp", action="store_true", help="only the two small problems")
    args = parser.parse_args()
    torch.set_num_threads(1)
    warm_up()
    result = {"demographic_parity": demographic_parity_problem(args.seed, args.bound, args.steps),
              "bounded_group_loss": bounded_group_loss_problem(args.seed, args.steps),
              "seed": args.seed, "torch_threads": torch.get_num_threads(), "provenance": provenance(device="cpu")}
    if not args.skip_mlp:
        result["mlp_demographic_parity"] = mlp_demographic_parity_problem(args.seed, args.bound, args.mlp_epochs)
    dp, bgl = result["demographic_parity"], result["bounded_group_loss"]
    print_table(f"demographic parity, bound {dp['bound']} (held-out; {dp['samples']['test']} test samples)", dp, "accuracy")
    print_table(f"\nbounded group loss, bound {bgl['bound']:.4f} (worst-group MSE; {bgl['samples']['test']} test samples)",
                bgl, "mse")
    if "mlp_demographic_parity" in result:
        mdp = result["mlp_demographic_parity"]
        print_table(f"\nMLP under demographic parity, bound {mdp['bound']} ({mdp['samples']['train']} training, "
                    f"{mdp['samples']['test']} test samples)", mdp, "accuracy")
    for name, problem in result.items():
        if isinstance(problem, dict) and "ours" in problem:
            ratio = problem["fairlearn"]["seconds"] / problem["ours"]["seconds"]
            print(f"{name}: ours {ratio:.1f}x faster than fairlearn" if ratio >= 1
                  else f"{name}: ours {1 / ratio:.1f}x slower than fairlearn")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
