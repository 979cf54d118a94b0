"""The main job: adversarial fine-tuning of a CLIP image encoder with FARE, naive regularization and LORE.

With no arguments it runs offline on a CPU on an embedded default:

1. builds (once; cached) a small CLIP-style model trained on the real digit
   images bundled with scikit-learn — an image tower and a text tower over
   captions such as "a photo of the digit seven" — as the frozen reference
   phi_0; a held-out quarter of the digits is never used for training;
2. fine-tunes its image encoder with FARE, naive regularization and LORE at
   the same eps and budget (`lore train`'s engine: Algorithm 1, K = 5);
3. evaluates zero-shot clean accuracy and APGD-CE + APGD-DLR-T robust
   accuracy at several eps for the reference and each method;
4. prints a table and writes into --out: results.json, training_curves.png
   (mean lambda, constraint satisfaction, clean probe accuracy) and
   accuracy.png (clean and robust accuracy against eps).

    python examples/lore_clip.py                  # < 10 minutes on 2 CPU cores
    python examples/lore_clip.py --quick          # same pipeline, small budget (CI)
    python examples/lore_clip.py --sweep rho      # LORE at several rho: the robustness-accuracy front
    python examples/lore_clip.py --sweep lambda   # naive regularization at several lambda (paper Fig. 1b)

With real weights and data (GPUs; torchrun for several):

    python examples/lore_clip.py --model ViT-B-32 --pretrained openai \\
        --train-data /data/imagenet100/train --eval-data /data/imagenet100/val

runs the paper's setting with its defaults (eps 4/255, rho 0.1, K = 5, AdamW lr
1e-5, batch 448, 5 epochs; evaluation at 1, 2, 4, 8 /255).
"""

from __future__ import annotations

import argparse
import copy
import json
import signal
import sys
from pathlib import Path

import torch

from lore.compare import (
    RunInterrupted, load_trained, plot_accuracy, plot_front, plot_training_comparison, results_table, train_fresh, zero_shot_results,
)
from lore.config import TrainConfig, parse_eps
from lore.data import build_dataset, dataset_classnames, probe_subset
from lore.evaluation import format_eps
from lore.heads import class_text_embeddings
from lore.models import build_model

EMBEDDED = "digits-clip"
SWEEPS = {"rho": ("lore", "rho", [0.02, 0.05, 0.1, 0.2, 0.4]), "lambda": ("naive", "naive_weight", [0.1, 0.3, 1.0, 3.0, 10.0])}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/lore_clip"), help="output folder")
    parser.add_argument("--quick", action="store_true", help="small budget, same code path (< 2 minutes)")
    parser.add_argument("--model", default=EMBEDDED, help="digits-clip (embedded), an open_clip name, or local-dir:PATH")
    parser.add_argument("--pretrained", default=None, help="open_clip tag or weights file")
    parser.add_argument("--train-data", default=None, help="training images (ImageFolder or torchvision:NAME:ROOT)")
    parser.add_argument("--eval-data", default=None, help="held-out images for evaluation")
    parser.add_argument("--methods", default="fare,naive,lore", help="comma list among fare, naive, lore, tecoa, tecoa-l2, tecoa-kl")
    parser.add_argument("--train-eps", default=None, help="training l_inf radius (default: 32/255 embedded, 4/255 real)")
    parser.add_argument("--eval-eps", default=None, help="comma list (default: 8,16,32 /255 embedded; 1,2,4,8 /255 real)")
    parser.add_argument("--rho", type=float, default=None, help="LORE margin (default: 0.1)")
    parser.add_argument("--naive-weight", type=float, default=1.0, help="lambda of naive regularization")
    parser.add_argument("--dual-lr", type=float, default=None,
                        help="dual learning rate (default: 5e-4 real, the paper's; embedded: the digits embeddings "
                        "have ||phi_0||^2 ~ 2 instead of ~ 100, so violations are ~50x smaller: 0.5)")
    parser.add_argument("--steps", type=int, default=None, help="training batches per method (default: 200 embedded, 60 quick)")
    parser.add_argument("--epochs", type=int, default=5, help="epochs with real data (when --steps is not given)")
    parser.add_argument("--batch-size", type=int, default=None, help="per process (default: 64 embedded, 448 real)")
    parser.add_argument("--lr", type=float, default=None, help="AdamW lr (default: 1e-3 embedded, 1e-5 real)")
    parser.add_argument("--eval-samples", type=int, default=None, help="held-out images evaluated (default: 300, quick 120)")
    parser.add_argument("--apgd-iter", type=int, default=None, help="APGD iterations (default: 100 real, 50 embedded, 20 quick)")
    parser.add_argument("--sweep", choices=sorted(SWEEPS), default=None, help="train a family and plot its front")
    parser.add_argument("--cache-dir", default="~/.cache/lore", help="where the embedded reference model is cached")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="", help="cpu or cuda (default: cuda if available)")
    parser.add_argument("--resume", action="store_true",
                        help="continue an interrupted job in --out: finished trainings are reused, an interrupted one resumes")
    return parser.parse_args(argv)


def settings_for(args) -> dict:
    embedded = args.model == EMBEDDED
    return {
        "train_eps": parse_eps(args.train_eps or ("32/255" if embedded else "4/255")),
        "eval_eps": [parse_eps(e) for e in (args.eval_eps or ("8/255,16/255,32/255" if embedded else "1/255,2/255,4/255,8/255")).split(",")],
        "rho": args.rho if args.rho is not None else 0.1,
        "steps": args.steps or ((60 if args.quick else 200) if embedded else None),
        "batch_size": args.batch_size or (64 if embedded else 448),
        "lr": args.lr or (1e-3 if embedded else 1e-5),
        "dual_lr": args.dual_lr or (0.5 if embedded else 5e-4),
        "eval_samples": args.eval_samples or (120 if args.quick else 300),
        "apgd_iter": args.apgd_iter or ((20 if args.quick else 50) if embedded else 100),
        "train_data": args.train_data or ("digits" if embedded else None),
        "eval_data": args.eval_data or args.train_data or "digits",
    }


def train_config(args, s, method: str, folder: Path, **overrides) -> TrainConfig:
    """The `lore train` configuration of one method in this comparison."""
    return TrainConfig(
        model=args.model, pretrained=args.pretrained, data=s["train_data"],
        probe_data=None if s["train_data"] == "digits" else s["eval_data"], method=method, eps=s["train_eps"],
        rho=overrides.get("rho", s["rho"]), naive_weight=overrides.get("naive_weight", args.naive_weight),
        primal_steps=5, dual_lr=s["dual_lr"], lr=s["lr"], batch_size=s["batch_size"], epochs=args.epochs,
        max_steps=s["steps"], seed=args.seed, output=str(folder), checkpoint_every=10_000,
        probe_every=max(1, (s["steps"] or 1000) // 10), probe_size=128, cache_dir=args.cache_dir, device=args.device,
        dual_hidden=128 if args.model == EMBEDDED else 512,
    )


def main(argv=None) -> int:
    """Runs the job; on SIGTERM/SIGINT it stops, writes an "interrupted" results.json and returns 130."""
    args = parse_args(argv)
    previous = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)  # outside training too (training checkpoints first)
    try:
        return run(args)
    except (RunInterrupted, KeyboardInterrupt) as stop:
        where = str(stop) if isinstance(stop, RunInterrupted) else "interrupted outside training (nothing was lost)"
        (args.out / "results.json").write_text(json.dumps({"status": "interrupted", "reason": where}, indent=2))
        print(f"\n{where}\nno results were written; continue with the same command and --resume", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)


def _raise_keyboard_interrupt(signum, frame):
    raise KeyboardInterrupt


def run(args) -> int:
    s = settings_for(args)
    if s["train_data"] is None:
        print("--train-data is required with real weights (an ImageFolder or torchvision:NAME:ROOT)", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").unlink(missing_ok=True)  # a results.json describes a finished job, and only that
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    print(f"building the reference phi_0 ({args.model}) ...", flush=True)
    built = build_model(args.model, args.pretrained, None, cache_dir=Path(args.cache_dir).expanduser(), seed=args.seed, device=device)
    reference_encoder = copy.deepcopy(built.encoder).eval()
    eval_set = build_dataset(s["eval_data"], built.image_size, split="test", seed=args.seed)
    images, labels = probe_subset(eval_set, s["eval_samples"], args.seed)
    images, labels = images.to(device), labels.to(device)
    classnames = dataset_classnames(eval_set)
    if built.clip is None or not classnames:
        print("zero-shot evaluation needs a CLIP model and class names", file=sys.stderr)
        return 2
    templates = ["a photo of the digit {}."] if args.model == EMBEDDED else ["a photo of a {}.", "a photo of the {}."]
    class_embeddings = class_text_embeddings(built.clip, built.tokenizer, list(classnames), templates)

    def measure(encoder):
        return zero_shot_results(encoder, reference_encoder, class_embeddings, images, labels, eps=s["eval_eps"],
                                 n_iter=s["apgd_iter"], rho=s["rho"], seed=args.seed)

    def run_and_evaluate(name, method, **overrides):
        print(f"\n== {name}: training ({method}, eps {format_eps(s['train_eps'])}) ==", flush=True)
        run = train_fresh(train_config(args, s, method, args.out / name, **overrides), resume=args.resume)
        print(f"== {name}: evaluating ==", flush=True)
        return run, measure(load_trained(reference_encoder, run))

    if args.sweep:
        method, key, values = SWEEPS[args.sweep]
        sweep_file = args.out / "sweeps.json"
        sweeps = json.loads(sweep_file.read_text()) if sweep_file.is_file() else {}
        rows = []
        for value in values:
            _, result = run_and_evaluate(f"sweep-{args.sweep}-{value:g}", method, **{key: value})
            rows.append({"value": value, **result})
        sweeps[args.sweep] = rows
        sweep_file.write_text(json.dumps(sweeps, indent=2))
        eps_label = format_eps(s["eval_eps"][len(s["eval_eps"]) // 2])
        points = {f"{'LORE (rho)' if k == 'rho' else 'naive (lambda)'}": [(r["value"], r["clean_accuracy"], r["robust_accuracy"][eps_label]) for r in v]
                  for k, v in sweeps.items()}
        plot_front(points, eps_label, args.out / "pareto_front.png")
        print(f"\nwrote {sweep_file} and {args.out / 'pareto_front.png'}")
        return 0

    results = {"reference": measure(reference_encoder)}
    runs = {}
    for method in [m.strip() for m in args.methods.split(",") if m.strip()]:
        runs[method], results[method] = run_and_evaluate(method, method)

    eps_labels = list(results["reference"]["robust_accuracy"])
    print(f"\nzero-shot accuracy on {len(labels)} held-out images; robust = APGD-CE + APGD-DLR-T ({s['apgd_iter']} iterations)")
    print(results_table(results))
    payload = {
        "status": "finished",
        "setting": {"model": args.model, "train_eps": format_eps(s["train_eps"]), "eval_eps": eps_labels, "rho": s["rho"],
                    "naive_weight": args.naive_weight, "steps": s["steps"], "batch_size": s["batch_size"],
                    "eval_samples": len(labels), "apgd_iter": s["apgd_iter"], "quick": args.quick, "seed": args.seed},
        "methods": results,
    }
    (args.out / "results.json").write_text(json.dumps(payload, indent=2))
    plot_training_comparison(runs, s["rho"], args.out / "training_curves.png")
    plot_accuracy(results, args.out / "accuracy.png")
    print(f"\nwrote {args.out / 'results.json'}, training_curves.png, accuracy.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
