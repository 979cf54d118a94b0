"""The ten-line constrained loop of `constrained`, on real data (scikit-learn digits).

A reference classifier is trained on clean digits. A second classifier is then
trained on noisy digits (a robustness objective) under the per-sample
constraint KL(p_ref(x) || p(x)) <= rho * H(p_ref(x)) on clean x, enforced by a
multiplier network on the reference logits. The run prints, for the
constrained model and an unconstrained one, the clean accuracy and the
fraction of samples that satisfy the constraint.

    python examples/constrained_loop.py [--steps 300] [--rho 0.2]
"""

from __future__ import annotations

import argparse

import torch
from sklearn.datasets import load_digits

from constrained import Constraint, EntropyMargin, MultiplierNetwork, PrimalDual, kl_div


def mlp() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--rho", type=float, default=0.2)
    parser.add_argument("--noise", type=float, default=0.6, help="std of the training noise, pixels in [0, 1]")
    args = parser.parse_args()

    torch.manual_seed(0)
    digits = load_digits()
    x = torch.tensor(digits.data, dtype=torch.float32) / 16.0
    y = torch.tensor(digits.target)
    train, test = slice(0, 1400), slice(1400, None)

    reference = mlp()
    opt = torch.optim.Adam(reference.parameters(), lr=1e-2)
    for _ in range(300):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(reference(x[train]), y[train]).backward()
        opt.step()
    reference.requires_grad_(False)

    results = {}
    for constrained_run in (False, True):
        torch.manual_seed(1)
        model = mlp()
        model.load_state_dict(reference.state_dict())
        model.requires_grad_(True)
        primal = torch.optim.Adam(model.parameters(), lr=3e-3)
        fidelity = Constraint(d=kl_div, margin=EntropyMargin(args.rho), name="fidelity")
        pd = PrimalDual(primal, {fidelity: MultiplierNetwork(10, hidden=64)}, dual_lr=0.05, primal_steps_per_dual=5)
        for _ in range(args.steps):
            idx = torch.randint(0, 1400, (128,))
            xb, yb = x[idx], y[idx]
            ref_logits = reference(xb)

            def closure():
                noisy = (xb + args.noise * torch.randn_like(xb)).clamp(0, 1)
                loss = torch.nn.functional.cross_entropy(model(noisy), yb)
                return loss, [fidelity.observe(model(xb), ref_logits, features=ref_logits)]

            if constrained_run:
                report = pd.step(closure)
            else:
                primal.zero_grad()
                closure()[0].backward()
                primal.step()
        with torch.no_grad():
            clean_acc = (model(x[test]).argmax(1) == y[test]).float().mean().item()
            noisy_acc = (model((x[test] + args.noise * torch.randn_like(x[test])).clamp(0, 1)).argmax(1) == y[test]).float().mean().item()
            satisfied = (fidelity.violation(model(x[test]), reference(x[test])) <= 0).float().mean().item()
        results["constrained" if constrained_run else "unconstrained"] = (clean_acc, noisy_acc, satisfied)
        if constrained_run:
            print("last step:", {k: round(v, 4) for k, v in report.as_dict().items()})

    with torch.no_grad():
        ref_acc = (reference(x[test]).argmax(1) == y[test]).float().mean().item()
    print(f"reference clean accuracy on held-out digits: {ref_acc:.3f}")
    print(f"{'model':<14}{'clean acc':>10}{'noisy acc':>10}{'constraint satisfied':>22}")
    for name, (clean_acc, noisy_acc, satisfied) in results.items():
        print(f"{name:<14}{clean_acc:>10.3f}{noisy_acc:>10.3f}{satisfied:>22.3f}")


if __name__ == "__main__":
    main()
