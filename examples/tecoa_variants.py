"""Supervised adversarial fine-tuning: TeCoA vs TeCoA+l2 vs TeCoA+KL on the embedded digits CLIP model.

TeCoA (paper Eq. 25) minimises the adversarial cross-entropy of zero-shot
logits; TeCoA+l2 adds LORE's embedding constraint ||phi(x) - phi_0(x)||^2 <=
rho ||phi_0(x)||^2, TeCoA+KL the predictive constraint KL(p_0 || p_theta) <=
rho H(p_0) (App. J.7), each with a multiplier network on phi_0(x). Prints
zero-shot clean and APGD robust accuracy for the reference and each variant,
and writes results.json and plots into --out.

    python examples/tecoa_variants.py [--quick] [--out runs/tecoa_variants]
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

import torch

from lore.data.digits import DIGIT_NAMES
from lore.data.images import build_dataset, probe_subset
from lore.jsonio import write_json
from lore.models.build import build_model, class_embeddings
from lore.training.config import TrainConfig
from lore.units import format_eps
from lore_clip_support.compare import (load_trained, plot_accuracy, plot_training_comparison, results_table, train_fresh,
                                       zero_shot_results)

EVAL_EPS = (8 / 255, 16 / 255, 32 / 255)
TRAIN_EPS = 32 / 255


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/tecoa_variants"))
    parser.add_argument("--quick", action="store_true", help="small budget")
    parser.add_argument("--rho", type=float, default=0.1)
    parser.add_argument("--cache-dir", default="~/.cache/lore")
    args = parser.parse_args()
    steps, samples, n_iter = (40, 100, 10) if args.quick else (150, 300, 50)

    built = build_model("digits-clip", None, None, cache_dir=Path(args.cache_dir).expanduser(), seed=0, device=torch.device("cpu"))
    reference = copy.deepcopy(built.encoder).eval()
    images, labels = probe_subset(build_dataset("digits", built.image_size, split="test"), samples, seed=0)
    classes = class_embeddings(built, DIGIT_NAMES)

    def measure(encoder):
        return zero_shot_results(encoder, reference, classes, images, labels, eps=EVAL_EPS, n_iter=n_iter, rho=args.rho)

    results, runs = {"reference": measure(reference)}, {}
    for method in ("tecoa", "tecoa-l2", "tecoa-kl"):
        print(f"== {method} ==", flush=True)
        constrained = {"rho": args.rho, "dual_lr": 1e-3, "dual_hidden": 128} if method != "tecoa" else {}
        config = TrainConfig(model="digits-clip", method=method, eps=TRAIN_EPS, primal_steps=5, lr=1e-3, **constrained,
                             batch_size=64, max_steps=steps, probe_every=max(1, steps // 10),
                             probe_size=128, checkpoint_every=10_000, output=str(args.out / method), cache_dir=args.cache_dir)
        runs[method] = train_fresh(config)
        results[method] = measure(load_trained(reference, runs[method]))
    print(results_table(results))
    write_json(args.out / "results.json", {"methods": results})
    plot_training_comparison(runs, args.rho, args.out / "training_curves.png", train_eps=format_eps(TRAIN_EPS))
    plot_accuracy(results, args.out / "accuracy.png", train_eps=format_eps(TRAIN_EPS))
    print(f"wrote {args.out / 'results.json'}, training_curves.png, accuracy.png")


if __name__ == "__main__":
    main()
