"""The main job: the paper's Table 3 in miniature — FARE, naive regularization and LORE over training radii.

With no arguments it runs offline on a CPU on an embedded default:

1. builds (once; cached) a small CLIP-style model trained on the real digit
   images bundled with scikit-learn — an image tower and a text tower over
   captions such as "a photo of the digit seven" — as the frozen reference
   phi_0; a held-out quarter of the digits (449 images) is never trained on;
2. fine-tunes its image encoder with FARE, naive regularization and LORE at
   three training radii (`lore train`'s engine: Algorithm 1, K = 5), over
   `--seeds` training seeds;
3. evaluates every model on all held-out digits: zero-shot clean accuracy,
   robust accuracy (worst case of APGD-CE and APGD-DLR-T) at several radii,
   and the share of images whose clean embedding stays within the margin;
4. prints the series the paper's way (mean ± std over seeds, each method's
   difference to FARE in points, ↑/↓) and writes into --out: results.json,
   series.png (accuracy vs training radius), constraint.png (held-out clean
   deviation, margin satisfaction and lambda over training at the largest
   radius: paper Fig. 6, 7, 9), training_curves.png and accuracy.png.

    python examples/lore_clip.py                  # one seed, < 10 minutes on 2 CPU cores
    python examples/lore_clip.py --seeds 3        # the table of docs/results.md (about 3x longer)
    python examples/lore_clip.py --quick          # two radii, small budget (< 2 minutes)
    python examples/lore_clip.py --sweep rho,lambda   # LORE's rho front vs naive's lambda front (Fig. 1b)
    python examples/lore_clip.py --ablation       # dual network/linear/scalar, adaptive/fixed margin, K = 5/1

Interrupted (Ctrl-C, SIGTERM), it writes a results.json marked "interrupted"
and exits 130; the same command with --resume reuses finished trainings and
evaluations and resumes the interrupted training from its checkpoint.

With real weights and data (GPUs; torchrun for several):

    python examples/lore_clip.py --model ViT-B-32 --pretrained openai \\
        --train-data /data/imagenet100/train --eval-data /data/imagenet100/val

runs the paper's setting with its defaults (training eps 1, 2, 4 /255, rho 0.1,
K = 5, AdamW lr 1e-5, batch 448, 5 epochs; evaluation at 1, 2, 4, 8 /255 with
100 APGD iterations).
"""

from __future__ import annotations

import argparse
import copy
import json
import signal
import sys
import time
from pathlib import Path

import torch

from lore.training.checkpoint import CheckpointError
from lore.compare import (
    RunInterrupted, load_trained, plot_accuracy, plot_front, plot_training_comparison, results_table, train_fresh,
    zero_shot_results,
)
from lore.training.config import TrainConfig, parse_eps
from lore.training.data import build_dataset, dataset_classnames, probe_subset
from lore.evaluation import format_eps
from lore.heads import class_text_embeddings
from lore.models import build_model
from lore.series import aggregate, plot_constraint, plot_series, series_table

EMBEDDED = "digits-clip"
SWEEPS = {"rho": ("lore", "rho", [0.02, 0.05, 0.1, 0.2, 0.4]), "lambda": ("naive", "naive_weight", [0.1, 0.3, 1.0, 3.0, 10.0])}
ABLATIONS = {  # LORE variants (paper App. G: dual parameterisation; Table 13: margin; Algorithm 1: K)
    "lore": {},
    "dual linear": {"dual": "linear"},
    "dual scalar": {"dual": "scalar"},
    "fixed margin": {"adaptive_margin": False},  # rho becomes the absolute tolerance (set in run_ablation)
    "K = 1": {"primal_steps": 1},
}
# Measured on 2 CPU cores (this repository's CI machine), embedded model, batch 64, PGD-10, K = 5:
SECONDS_PER_BATCH = {"fare": 0.23, "naive": 0.29, "lore": 0.30}
SECONDS_PER_EVALUATION = 15.0  # all 449 held-out digits, 3 radii, 10 APGD iterations


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/lore_clip"), help="output folder")
    parser.add_argument("--quick", action="store_true", help="two training radii, small budget, same code path (< 2 minutes)")
    parser.add_argument("--model", default=EMBEDDED, help="digits-clip (embedded), an open_clip name, or local-dir:PATH")
    parser.add_argument("--pretrained", default=None, help="open_clip tag or weights file")
    parser.add_argument("--train-data", default=None, help="training images (ImageFolder or torchvision:NAME:ROOT)")
    parser.add_argument("--eval-data", default=None, help="held-out images for evaluation")
    parser.add_argument("--methods", default="fare,naive,lore", help="comma list among fare, naive, lore, tecoa, tecoa-l2, tecoa-kl")
    parser.add_argument("--train-eps", default=None,
                        help="comma list of training radii (default: 16,32,48 /255 embedded; 1,2,4 /255 real)")
    parser.add_argument("--eval-eps", default=None, help="comma list (default: 8,16,32 /255 embedded; 1,2,4,8 /255 real)")
    parser.add_argument("--seeds", type=int, default=1, help="training seeds per (method, radius): --seed .. --seed+N-1")
    parser.add_argument("--rho", type=float, default=None, help="LORE margin (default: 0.1)")
    parser.add_argument("--naive-weight", type=float, default=1.0, help="lambda of naive regularization")
    parser.add_argument("--dual-lr", type=float, default=None,
                        help="Adam dual learning rate (default: 5e-4 real, the paper's; embedded 1e-3: its 200 batches "
                        "are only 40 dual steps)")
    parser.add_argument("--steps", type=int, default=None, help="training batches per model (default: 160 embedded, 30 quick)")
    parser.add_argument("--epochs", type=int, default=5, help="epochs with real data (when --steps is not given)")
    parser.add_argument("--batch-size", type=int, default=None, help="per process (default: 64 embedded, 448 real)")
    parser.add_argument("--lr", type=float, default=None, help="AdamW lr (default: 1e-3 embedded, 1e-5 real)")
    parser.add_argument("--eval-samples", type=int, default=None,
                        help="held-out images evaluated (default: all 449 embedded, 120 quick; 1000 real)")
    parser.add_argument("--apgd-iter", type=int, default=None,
                        help="APGD iterations (default: 100 real; 10 embedded, which ranks the methods as 100 do: docs/results.md)")
    parser.add_argument("--sweep", default=None, help="rho, lambda or rho,lambda: train families and plot their fronts")
    parser.add_argument("--ablation", action="store_true", help="LORE variants at the largest radius (App. G, Table 13, K)")
    parser.add_argument("--cache-dir", default="~/.cache/lore", help="where the embedded reference model is cached")
    parser.add_argument("--seed", type=int, default=0, help="first training seed")
    parser.add_argument("--split-seed", type=int, default=0,
                        help="seed of the held-out split, the evaluation subset and the embedded reference model "
                        "(fixed across training seeds, so every seed is evaluated on the same images)")
    parser.add_argument("--device", default="", help="cpu or cuda (default: cuda if available)")
    parser.add_argument("--resume", action="store_true",
                        help="continue an interrupted job in --out: finished trainings and evaluations are reused, "
                        "an interrupted training resumes from its checkpoint")
    args = parser.parse_args(argv)
    if args.seeds < 1:
        parser.error(f"--seeds must be >= 1, got {args.seeds}")
    unknown = [k for k in _split(args.sweep or "") if k not in SWEEPS]
    if unknown:
        parser.error(f"--sweep takes {sorted(SWEEPS)} (comma list), got {unknown}")
    return args


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def settings_for(args) -> dict:
    embedded = args.model == EMBEDDED
    train_eps = args.train_eps or ("16/255,32/255,48/255" if embedded else "1/255,2/255,4/255")
    radii = sorted({parse_eps(e) for e in _split(train_eps)})
    if args.quick and args.train_eps is None:
        radii = [radii[0], radii[-1]]
    return {
        "train_eps": radii,
        "eval_eps": [parse_eps(e) for e in _split(args.eval_eps or ("8/255,16/255,32/255" if embedded else "1/255,2/255,4/255,8/255"))],
        "rho": args.rho if args.rho is not None else 0.1,
        "steps": args.steps or ((30 if args.quick else 160) if embedded else None),
        "batch_size": args.batch_size or (64 if embedded else 448),
        "lr": args.lr or (1e-3 if embedded else 1e-5),
        "dual_lr": args.dual_lr or (1e-3 if embedded else 5e-4),
        "eval_samples": args.eval_samples or (120 if args.quick else (100_000 if embedded else 1000)),
        "apgd_iter": args.apgd_iter or (10 if embedded else 100),
        "train_data": args.train_data or ("digits" if embedded else None),
        "eval_data": args.eval_data or args.train_data or "digits",
        "methods": _split(args.methods),
    }


def train_config(args, s, method: str, folder: Path, *, eps: float, seed: int, **overrides) -> TrainConfig:
    """The `lore train` configuration of one model of this job."""
    values = dict(
        model=args.model, pretrained=args.pretrained, data=s["train_data"],
        probe_data=None if s["train_data"] == "digits" else s["eval_data"], method=method, eps=eps,
        rho=s["rho"], naive_weight=args.naive_weight, primal_steps=5, dual_lr=s["dual_lr"], lr=s["lr"],
        batch_size=s["batch_size"], epochs=args.epochs, max_steps=s["steps"], seed=seed, split_seed=args.split_seed,
        output=str(folder), checkpoint_every=max(10, (s["steps"] or 1000) // 4),
        probe_every=max(1, (s["steps"] or 1000) // 8), probe_size=256, cache_dir=args.cache_dir, device=args.device,
        dual_hidden=128 if args.model == EMBEDDED else 512,
    )
    values.update(overrides)
    return TrainConfig(**values)


class Job:
    """Everything the runs of one invocation share: phi_0, the held-out images, the zero-shot head, the timer."""

    def __init__(self, args, s) -> None:
        self.args, self.s = args, s
        self.device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        print(f"building the reference phi_0 ({args.model}) ...", flush=True)
        built = build_model(args.model, args.pretrained, None, cache_dir=Path(args.cache_dir).expanduser(),
                            seed=args.split_seed, device=self.device)
        self.built = built
        self.reference = copy.deepcopy(built.encoder).eval()
        eval_set = build_dataset(s["eval_data"], built.image_size, split="test", seed=args.split_seed)
        images, labels = probe_subset(eval_set, s["eval_samples"], args.split_seed)
        self.images, self.labels = images.to(self.device), labels.to(self.device)
        classnames = dataset_classnames(eval_set)
        if built.clip is None or not classnames:
            raise ValueError("zero-shot evaluation needs a CLIP model and class names")
        templates = ["a photo of the digit {}."] if args.model == EMBEDDED else ["a photo of a {}.", "a photo of the {}."]
        self.class_embeddings = class_text_embeddings(built.clip, built.tokenizer, list(classnames), templates)
        self.started = time.perf_counter()

    def evaluation_setting(self, seed: int) -> dict:
        s = self.s
        return {"eval_eps": [format_eps(e) for e in s["eval_eps"]], "apgd_iter": s["apgd_iter"],
                "eval_samples": len(self.labels), "rho": s["rho"], "seed": seed}

    def measure(self, encoder, folder: Path, seed: int) -> dict:
        """Zero-shot results of `encoder`, cached in folder/evaluations.json, one entry per evaluation setting.

        A training folder is emptied whenever it is trained again, so a cached entry always describes the
        weights in that folder.
        """
        cache = folder / "evaluations.json"
        setting = self.evaluation_setting(seed)
        entries = json.loads(cache.read_text()) if cache.is_file() else []
        for entry in entries:
            if entry["setting"] == setting:
                return entry["result"]
        result = zero_shot_results(encoder, self.reference, self.class_embeddings, self.images, self.labels,
                                   eps=self.s["eval_eps"], n_iter=self.s["apgd_iter"], rho=self.s["rho"], seed=seed)
        folder.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(entries + [{"setting": setting, "result": result}], indent=2))
        return result

    def train_and_measure(self, name: str, config: TrainConfig, *, resume: bool) -> dict:
        print(f"\n== {name}: training ({config.method}, eps {format_eps(config.eps)}, seed {config.seed}) ==", flush=True)
        folder = train_fresh(config, resume=resume)
        print(f"== {name}: evaluating ==", flush=True)
        return self.measure(load_trained(self.reference, folder), folder, config.seed)

    def progress(self, done: int, total: int) -> None:
        elapsed = time.perf_counter() - self.started
        print(f"-- {done}/{total} models done in {elapsed / 60:.1f} min; about "
              f"{elapsed / done * (total - done) / 60:.1f} min left", flush=True)


def expected_minutes(s: dict, trainings: list[str], evaluations: int, samples: int) -> float:
    """The embedded job's expected duration from per-batch and per-evaluation costs measured on 2 CPU cores."""
    batches = sum(SECONDS_PER_BATCH.get(m, 0.32) * (s["steps"] or 0) for m in trainings)
    scale = len(s["eval_eps"]) / 3 * samples / 449 * s["apgd_iter"] / 10
    return (batches + evaluations * SECONDS_PER_EVALUATION * scale) / 60


def run_entry(method: str, train_eps: float, seed: int, result: dict) -> dict:
    """One element of results.json's "runs"."""
    return {"method": method, "train_eps": format_eps(train_eps), "seed": seed,
            "clean_accuracy": result["clean_accuracy"], "robust_accuracy": result["robust_accuracy"],
            "within_margin": result["constraint_satisfaction"]}


def run_folder(out: Path, method: str, eps: float, seed: int, tag: str = "") -> Path:
    return out / "runs" / f"{method}{tag}-eps{format_eps(eps).replace('/', 'of')}-seed{seed}"


def run_series(job: Job) -> int:
    """The default mode: every method at every training radius and seed; the ε-series table and plots."""
    args, s = job.args, job.s
    seeds = list(range(args.seed, args.seed + args.seeds))
    plan = [(seed, eps, method) for seed in seeds for eps in s["train_eps"] for method in s["methods"]]
    expected = (f"; expected about {expected_minutes(s, [m for _, _, m in plan], len(plan) + 1, len(job.labels)):.0f} min on 2 CPU cores"
                if args.model == EMBEDDED else "")
    print(f"plan: {len(plan)} trainings ({len(s['methods'])} methods x {len(s['train_eps'])} radii x {len(seeds)} seeds) "
          f"and {len(plan) + 1} evaluations on {len(job.labels)} images{expected}", flush=True)
    reference = job.measure(job.reference, args.out / "reference", args.split_seed)
    runs, results, folders = [], {}, {}
    for index, (seed, eps, method) in enumerate(plan):
        folder = run_folder(args.out, method, eps, seed)
        result = job.train_and_measure(method, train_config(args, s, method, folder, eps=eps, seed=seed), resume=args.resume)
        runs.append(run_entry(method, eps, seed, result))
        results[(method, eps, seed)], folders[(method, eps, seed)] = result, folder
        job.progress(index + 1, len(plan))

    rows = aggregate(runs)
    print(f"\nzero-shot accuracy on {len(job.labels)} held-out images, mean ± std over {len(seeds)} seed(s); robust = "
          f"worst case of APGD-CE and APGD-DLR-T ({s['apgd_iter']} iterations); (↑/↓ x) = difference to FARE in points; "
          f"in margin = share with ||phi-phi_0||^2 <= {s['rho']:g} ||phi_0||^2")
    print(series_table(rows, reference))
    largest = s["train_eps"][-1]
    headline = {"reference": reference, **{m: results[(m, largest, seeds[0])] for m in s["methods"]}}
    payload = {
        "status": "finished",
        "setting": {"model": args.model, "train_eps": format_eps(largest), "train_eps_series": [format_eps(e) for e in s["train_eps"]],
                    "eval_eps": [format_eps(e) for e in s["eval_eps"]], "rho": s["rho"], "naive_weight": args.naive_weight,
                    "steps": s["steps"], "batch_size": s["batch_size"], "eval_samples": len(job.labels),
                    "apgd_iter": s["apgd_iter"], "quick": args.quick, "seed": args.seed, "seeds": seeds,
                    "dual_lr": s["dual_lr"], "lr": s["lr"]},
        "methods": headline,
        "runs": runs,
        "series": rows,
    }
    (args.out / "results.json").write_text(json.dumps(payload, indent=2, ensure_ascii=False))
    (args.out / "series.md").write_text(series_table(rows, reference, markdown=True) + "\n")
    plot_series(rows, reference, args.out / "series.png")
    at_largest = {m: folders[(m, largest, seeds[0])] for m in s["methods"]}
    plot_constraint(at_largest, s["rho"], args.out / "constraint.png")
    plot_training_comparison(at_largest, s["rho"], args.out / "training_curves.png")
    plot_accuracy(headline, args.out / "accuracy.png")
    print(f"\nwrote {args.out / 'results.json'}, series.md, series.png, constraint.png, training_curves.png, accuracy.png")
    return 0


def run_sweeps(job: Job) -> int:
    """LORE's rho front and/or naive's lambda front at the largest training radius, with FARE and phi_0 as points."""
    args, s = job.args, job.s
    eps, seed = s["train_eps"][-1], args.seed
    kinds = _split(args.sweep)
    trainings = ["fare"] + [SWEEPS[k][0] for k in kinds for _ in SWEEPS[k][2]]
    if args.model == EMBEDDED:
        print(f"plan: {len(trainings)} trainings at {format_eps(eps)}; expected about "
              f"{expected_minutes(s, trainings, len(trainings) + 1, len(job.labels)):.0f} min on 2 CPU cores", flush=True)
    reference = job.measure(job.reference, args.out / "reference", seed)
    fare = job.train_and_measure("fare", train_config(args, s, "fare", run_folder(args.out, "fare", eps, seed), eps=eps, seed=seed),
                                 resume=True)  # reused when the series already trained it with these settings
    sweep_file = args.out / "sweeps.json"
    sweeps = json.loads(sweep_file.read_text()) if sweep_file.is_file() else {}
    done = 1
    for kind in kinds:
        method, key, values = SWEEPS[kind]
        rows = []
        for value in values:
            folder = run_folder(args.out, method, eps, seed, tag=f"-{kind}{value:g}")
            result = job.train_and_measure(f"{method} {key}={value:g}", train_config(
                args, s, method, folder, eps=eps, seed=seed, **{key: value}), resume=args.resume)
            rows.append({"value": value, **result})
            done += 1
            job.progress(done, len(trainings))
        sweeps[kind] = {"train_eps": format_eps(eps), "seed": seed, "rows": rows}
    sweeps["fare"], sweeps["reference"] = fare, reference
    sweep_file.write_text(json.dumps(sweeps, indent=2))
    eps_label = format_eps(s["eval_eps"][len(s["eval_eps"]) // 2])
    families = {("LORE (rho)" if k == "rho" else "naive (lambda)"): [(r["value"], r["clean_accuracy"], r["robust_accuracy"][eps_label])
                                                                       for r in sweeps[k]["rows"]]
                for k in SWEEPS if k in sweeps}
    single = {"FARE": (fare["clean_accuracy"], fare["robust_accuracy"][eps_label]),
              "reference": (reference["clean_accuracy"], reference["robust_accuracy"][eps_label])}
    plot_front(families, eps_label, args.out / "pareto_front.png", single=single)
    for kind in kinds:
        print(f"\n{kind} sweep at training eps {format_eps(eps)}:")
        print(results_table({f"{kind}={r['value']:g}": r for r in sweeps[kind]["rows"]} | {"fare": fare, "reference": reference}))
    print(f"\nwrote {sweep_file} and {args.out / 'pareto_front.png'}")
    return 0


def run_ablation(job: Job) -> int:
    """LORE variants at the largest training radius over the seeds; FARE for comparison."""
    args, s = job.args, job.s
    eps = s["train_eps"][-1]
    seeds = list(range(args.seed, args.seed + args.seeds))
    train_set = build_dataset(s["train_data"], job.built.image_size, split="train", seed=args.split_seed)
    images, _ = probe_subset(train_set, 2000, args.split_seed)
    with torch.no_grad():
        mean_norm = job.reference(images.to(job.device)).pow(2).sum(1).mean().item()
    tolerance = s["rho"] * mean_norm  # the fixed margin with the adaptive one's average tolerance
    variants = {"fare": ("fare", {})} | {name: ("lore", dict(overrides)) for name, overrides in ABLATIONS.items()}
    variants["fixed margin"][1]["rho"] = tolerance
    plan = [(seed, name) for seed in seeds for name in variants]
    if args.model == EMBEDDED:
        print(f"plan: {len(plan)} trainings at {format_eps(eps)}; expected about "
              f"{expected_minutes(s, [variants[n][0] for _, n in plan], len(plan), len(job.labels)):.0f} min on 2 CPU cores", flush=True)
    runs = []
    for index, (seed, name) in enumerate(plan):
        method, overrides = variants[name]
        folder = run_folder(args.out, method, eps, seed, tag="" if name in ("fare", "lore") else "-" + name.replace(" ", "").replace("=", ""))
        result = job.train_and_measure(name, train_config(args, s, method, folder, eps=eps, seed=seed, **overrides),
                                       resume=args.resume or name in ("fare", "lore"))
        runs.append(run_entry(name, eps, seed, result))
        job.progress(index + 1, len(plan))
    rows = aggregate(runs)
    print(f"\nablation at training eps {format_eps(eps)} ({len(seeds)} seed(s); fixed margin = {tolerance:.3f}, "
          f"i.e. rho x mean ||phi_0||^2 over training images); (↑/↓ x) = difference to FARE in points")
    print(series_table(rows, None))
    (args.out / "ablation.json").write_text(json.dumps({"status": "finished", "train_eps": format_eps(eps), "seeds": seeds,
                                                        "fixed_margin": tolerance, "runs": runs, "rows": rows},
                                                       indent=2, ensure_ascii=False))
    (args.out / "ablation.md").write_text(series_table(rows, None, markdown=True) + "\n")
    print(f"\nwrote {args.out / 'ablation.json'} and ablation.md")
    return 0


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
    except (CheckpointError, ValueError, FileNotFoundError) as error:
        print(f"lore_clip: {error}", file=sys.stderr)
        return 2
    finally:
        signal.signal(signal.SIGTERM, previous)


def _raise_keyboard_interrupt(signum, frame):
    raise KeyboardInterrupt


def run(args) -> int:
    s = settings_for(args)
    if s["train_data"] is None:
        raise ValueError("--train-data is required with real weights (an ImageFolder or torchvision:NAME:ROOT)")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").unlink(missing_ok=True)  # a results.json describes a finished job, and only that
    job = Job(args, s)
    if args.sweep:
        return run_sweeps(job)
    if args.ablation:
        return run_ablation(job)
    return run_series(job)


if __name__ == "__main__":
    sys.exit(main())
