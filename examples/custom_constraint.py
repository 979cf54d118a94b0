"""A user-defined divergence and margin in a dozen lines, enforced by `constrained`.

Divergence: a smooth Huber distance between outputs. Margin: a tolerance that
grows with the reference's own uncertainty (here, one minus its top softmax
probability). The task: fine-tune a digits classifier on label-noisy data while
keeping its logits near a clean reference's, per sample.

    python examples/custom_constraint.py
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits

from constrained import Constraint, MultiplierNetwork, PrimalDual


# ---- the dozen lines a user writes -------------------------------------------------------------
def huber(out: torch.Tensor, ref: torch.Tensor, delta: float = 1.0) -> torch.Tensor:
    """Per-sample Huber distance, [B]."""
    r = (out - ref).abs()
    return torch.where(r < delta, 0.5 * r**2, delta * (r - 0.5 * delta)).sum(dim=1)


@dataclass(frozen=True)
class UncertaintyMargin:
    """m(ref) = base + scale * (1 - max softmax(ref)): looser where the reference is unsure."""

    base: float
    scale: float

    def __call__(self, ref: torch.Tensor) -> torch.Tensor:
        return self.base + self.scale * (1 - F.softmax(ref.detach(), dim=1).amax(dim=1))


close_to_reference = Constraint(d=huber, margin=UncertaintyMargin(0.5, 5.0), name="close")
# -------------------------------------------------------------------------------------------------


def main() -> None:
    torch.manual_seed(0)
    digits = load_digits()
    x = torch.tensor(digits.data, dtype=torch.float32) / 16
    y = torch.tensor(digits.target)
    train, test = slice(0, 1400), slice(1400, None)
    reference = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))
    opt = torch.optim.Adam(reference.parameters(), lr=1e-2)
    for _ in range(200):
        opt.zero_grad()
        F.cross_entropy(reference(x[train]), y[train]).backward()
        opt.step()
    reference.requires_grad_(False)
    noisy = torch.where(torch.rand(1400) < 0.4, torch.randint(0, 10, (1400,)), y[train])  # 40 % wrong labels

    model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))
    model.load_state_dict(reference.state_dict())
    model.requires_grad_(True)
    pd = PrimalDual(torch.optim.Adam(model.parameters(), lr=3e-3), {close_to_reference: MultiplierNetwork(10, hidden=32)},
                    dual_lr=0.05)
    for step in range(300):
        idx = torch.randint(0, 1400, (128,))
        ref = reference(x[idx])

        def closure():
            out = model(x[idx])
            return F.cross_entropy(out, noisy[idx]), [close_to_reference.observe(out, ref, features=ref)]

        report = pd.step(closure)
        if step % 100 == 99:
            print(f"step {step + 1}: " + ", ".join(f"{k}={v:.3f}" for k, v in report.as_dict().items() if "/" in k))
    with torch.no_grad():
        accuracy = (model(x[test]).argmax(1) == y[test]).float().mean().item()
        reference_accuracy = (reference(x[test]).argmax(1) == y[test]).float().mean().item()
        held_out = (close_to_reference.violation(model(x[test]), reference(x[test])) <= 0).float().mean().item()
    print(f"held-out accuracy: reference {reference_accuracy:.3f}, constrained fine-tune on noisy labels {accuracy:.3f}; "
          f"{held_out:.1%} of held-out samples within the custom margin")


if __name__ == "__main__":
    main()
