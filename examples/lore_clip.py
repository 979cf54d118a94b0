"""The main job: robust fine-tuning of an image encoder with FARE, naive regularization and LORE.

With no arguments it runs offline on a CPU on an embedded default: a small
encoder pretrained on the real digit images bundled with scikit-learn is the
frozen reference phi_0; it is fine-tuned with FARE, naive regularization and
LORE at the same eps and budget, and each result is evaluated on held-out
digits: clean accuracy and PGD robust accuracy of the reference's linear
probe, and the fraction of samples whose clean embedding stays within the
LORE margin. A table is printed and `results.json` is written to --out.

(Interim version: the zero-shot CLIP-style default, APGD evaluation, plots and
the real-weights path arrive with the training/evaluation issues.)

    python examples/lore_clip.py            # ~1-2 minutes on 2 CPU cores
    python examples/lore_clip.py --quick    # smaller budget, same code path
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import lore
from lore import RobustStep, load_digits_images, pgd, pretrain_classifier, small_digits_encoder


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/lore_clip"), help="output folder")
    parser.add_argument("--quick", action="store_true", help="small budget for CI")
    parser.add_argument("--train-eps", type=float, default=64 / 255, help="l_inf training radius, pixels in [0, 1]")
    parser.add_argument("--rho", type=float, default=0.05, help="LORE margin scale")
    parser.add_argument("--naive-weight", type=float, default=1.0, help="lambda of naive regularization")
    parser.add_argument("--steps", type=int, default=None, help="training batches per method")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def accuracy(encoder, head, images, labels) -> float:
    with torch.no_grad():
        return (head(encoder(images)).argmax(1) == labels).float().mean().item()


def robust_accuracy(encoder, head, images, labels, eps: float, steps: int) -> float:
    encoder.eval()
    delta = pgd(
        lambda x: F.cross_entropy(head(encoder(x)), labels, reduction="none"),
        images, eps=eps, steps=steps, step_size=eps / 4, generator=torch.Generator().manual_seed(0),
    )
    return accuracy(encoder, head, images + delta, labels)


def main() -> None:
    args = parse_args()
    torch.manual_seed(args.seed)
    steps = args.steps or (40 if args.quick else 100)
    eval_eps = [8 / 255, 16 / 255, 32 / 255]
    train, held_out = load_digits_images(16).split(held_out=0.25, seed=args.seed)
    n_eval = 200 if args.quick else len(held_out.labels)
    eval_images, eval_labels = held_out.images[:n_eval], held_out.labels[:n_eval]

    print(f"pretraining the reference encoder phi_0 on {len(train.labels)} digit images ...")
    encoder = small_digits_encoder(embed_dim=32, width=16)
    head = pretrain_classifier(encoder, train, steps=150, seed=args.seed).requires_grad_(False)
    reference_state = copy.deepcopy(encoder.state_dict())
    reference = lore.FrozenReference(encoder)  # phi_0: a frozen snapshot of these weights

    methods = {"reference": None, "fare": lore.fare(), "naive": lore.naive(args.naive_weight), "lore": lore.lore(args.rho, hidden=64)}
    results = {}
    for name, method in methods.items():
        encoder.load_state_dict(reference_state)
        start = time.time()
        if method is not None:
            encoder.train()
            step = RobustStep(encoder, method, torch.optim.Adam(encoder.parameters(), lr=3e-4),
                              eps=args.train_eps, reference=reference, primal_steps=5, dual_lr=1e-3)
            generator = torch.Generator().manual_seed(args.seed)
            for _ in range(steps):
                idx = torch.randint(0, len(train.labels), (64,), generator=generator)
                step(train.images[idx], generator=generator)
        encoder.eval()
        with torch.no_grad():
            ref = reference(eval_images)
            satisfied = ((encoder(eval_images) - ref).pow(2).sum(1) <= args.rho * ref.pow(2).sum(1)).float().mean().item()
        results[name] = {
            "clean_accuracy": accuracy(encoder, head, eval_images, eval_labels),
            "robust_accuracy": {
                f"{round(e * 255)}/255": robust_accuracy(encoder, head, eval_images, eval_labels, e, 10 if args.quick else 20)
                for e in eval_eps
            },
            "constraint_satisfaction": satisfied,
            "train_seconds": round(time.time() - start, 1),
        }
        print(f"  {name:<9} done in {time.time() - start:.1f}s")

    header = f"{'method':<10}{'clean':>7}" + "".join(f"{'rob ' + k:>11}" for k in results["reference"]["robust_accuracy"]) + f"{'in margin':>11}"
    print("\nheld-out digits, linear probe of phi_0 (PGD robust accuracy):")
    print(header)
    for name, r in results.items():
        row = f"{name:<10}{r['clean_accuracy']:>7.3f}" + "".join(f"{v:>11.3f}" for v in r["robust_accuracy"].values())
        print(row + f"{r['constraint_satisfaction']:>11.3f}")
    args.out.mkdir(parents=True, exist_ok=True)
    payload = {"setting": {"train_eps": f"{round(args.train_eps * 255)}/255", "rho": args.rho, "steps": steps, "quick": args.quick},
               "methods": results}
    (args.out / "results.json").write_text(json.dumps(payload, indent=2))
    print(f"\nwrote {args.out / 'results.json'}")


if __name__ == "__main__":
    main()
