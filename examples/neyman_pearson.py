"""A Neyman-Pearson classifier: the fewest missed cancers with at most alpha false alarms.

scikit-learn's breast-cancer data (569 tumours, 30 features, bundled): the positive class is malignant.
Neyman and Pearson's problem bounds the type I error and minimises the type II error,

    minimise  P(score <= 0 | malignant)   subject to   P(score > 0 | benign) <= alpha,

here with a logistic model, the cross-entropy on the malignant tumours as the smooth objective, and the
false-positive rate declared as one value, `false_positive_rate(alpha)`. Its dual step reads the true rate of
false alarms (an indicator, no gradient), its primal step a sigmoid surrogate of it (`proxy`); the model kept
is the best iterate whose training false-positive rate is within alpha (`BestIterate`). The reference is the
usual alternative, an unconstrained logistic regression whose threshold is moved until its training
false-positive rate is within alpha.

    python examples/neyman_pearson.py [--alpha 0.05] [--steps 1500]

Prints, on the training split and on a held-out quarter (stratified, seed 0), the false-positive and
true-positive rates of both classifiers.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from constrained import BestIterate, PrimalDual, false_positive_rate


def rates(scores: np.ndarray, labels: np.ndarray, threshold: float = 0.0) -> tuple[float, float]:
    """(false-positive rate, true-positive rate) of predicting positive when score > threshold."""
    predicted = scores > threshold
    return float(predicted[labels == 0].mean()), float(predicted[labels == 1].mean())


def load(seed: int = 0):
    """Standardized (x_train, x_test, y_train, y_test), y = 1 for malignant."""
    data = load_breast_cancer()
    y = 1 - data.target  # scikit-learn codes malignant as 0
    x_train, x_test, y_train, y_test = train_test_split(data.data, y, test_size=0.25, stratify=y, random_state=seed)
    scaler = StandardScaler().fit(x_train)
    return scaler.transform(x_train), scaler.transform(x_test), y_train, y_test


def fit_neyman_pearson(x: np.ndarray, y: np.ndarray, alpha: float, steps: int) -> tuple[torch.nn.Linear, BestIterate]:
    """Full-batch primal-dual on the training split; returns the kept model and the selection record."""
    torch.manual_seed(0)
    x_t, y_t = torch.tensor(x, dtype=torch.float64), torch.tensor(y, dtype=torch.float64)
    model = torch.nn.Linear(x.shape[1], 1).double()
    bound = false_positive_rate(alpha)
    pd = PrimalDual(torch.optim.Adam(model.parameters(), lr=0.02), {bound: bound.multiplier()}, dual_lr=0.5)
    best = BestIterate(after=steps // 5)
    malignant = y_t == 1

    def closure():
        scores = model(x_t).squeeze(1)
        missed = torch.nn.functional.binary_cross_entropy_with_logits(scores[malignant], y_t[malignant])
        return missed, [bound.observe_scores(scores, labels=y_t)]

    for _ in range(steps):
        best.step(pd, closure, model)
    return best.restore(model), best


def threshold_moved(x: np.ndarray, y: np.ndarray, alpha: float) -> tuple[LogisticRegression, float]:
    """Unconstrained logistic regression and the smallest threshold whose training false-positive rate <= alpha."""
    model = LogisticRegression(max_iter=5000).fit(x, y)
    benign = np.sort(model.decision_function(x[y == 0]))
    allowed = int(np.floor(alpha * len(benign)))  # benign tumours that may score above the threshold
    threshold = benign[len(benign) - allowed - 1] if allowed < len(benign) else -np.inf
    return model, float(threshold)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--alpha", type=float, default=0.05, help="largest false-positive rate (default 0.05)")
    parser.add_argument("--steps", type=int, default=1500, help="primal-dual steps (default 1500)")
    args = parser.parse_args(argv)
    if not 0 < args.alpha < 1:
        parser.error(f"--alpha must be in (0, 1), got {args.alpha}")
    x_train, x_test, y_train, y_test = load()
    model, best = fit_neyman_pearson(x_train, y_train, args.alpha, args.steps)
    with torch.no_grad():
        ours = {split: rates(model(torch.tensor(x, dtype=torch.float64)).squeeze(1).numpy(), y)
                for split, x, y in (("train", x_train, y_train), ("test", x_test, y_test))}
    reference, threshold = threshold_moved(x_train, y_train, args.alpha)
    moved = {split: rates(reference.decision_function(x), y, threshold)
             for split, x, y in (("train", x_train, y_train), ("test", x_test, y_test))}
    print(f"Neyman-Pearson, alpha = {args.alpha:g}: {int((y_train == 0).sum())} benign and {int(y_train.sum())} "
          f"malignant training tumours, {len(y_test)} held out")
    print(f"{'classifier':<44} {'train FPR':>9} {'train TPR':>9} {'test FPR':>9} {'test TPR':>9}")
    for name, result in ((f"constrained (best feasible iterate, step {best.best_step})", ours),
                         ("logistic regression, threshold moved", moved)):
        print(f"{name:<44} {result['train'][0]:>9.3f} {result['train'][1]:>9.3f} {result['test'][0]:>9.3f} "
              f"{result['test'][1]:>9.3f}")
    return {"constrained": ours, "threshold_moved": moved, "feasible": best.feasible, "alpha": args.alpha}


if __name__ == "__main__":
    main()
