"""Attacks without gradients and random noise on the series' models: the paper's Table 9 (Square, a black-box
attack) and Fig. 12/13 (Gaussian noise), for every method, training radius and seed of the series.

`--black-box` trains whatever the series has not trained yet in --out (finished trainings are reused), then
evaluates each model on the held-out images: zero-shot accuracy under Square at every evaluation radius
(`--square-queries` queries per image, Andriushchenko et al. 2020) and under Gaussian noise of each std in
`NOISE_SIGMAS` (pixel units; noisy images clamped to [0, 1]). Each model's numbers are cached in its folder
(black_box.json, keyed by the settings), so a re-run only computes what is missing.
"""

from __future__ import annotations

from pathlib import Path

import torch

from lore.evaluation.suite import EvalSettings, evaluate
from lore.heads import ZeroShotHead
from lore.jsonio import write_json, write_text_atomic
from lore.provenance import weights_sha256
from lore.plotting import finish_axes, method_style, new_figure, save_figure
from lore.units import format_eps

from .compare import load_trained
from .job import Job, cached_result, run_folder, train_config
from .series import mean_std, stat_text

NOISE_SIGMAS = (0.05, 0.1, 0.2, 0.3)


def black_box_results(job: Job, encoder: torch.nn.Module, folder: Path, seed: int, queries: int) -> dict:
    """Square and Gaussian-noise accuracy of `encoder` on the job's held-out images, cached in folder/black_box.json
    (keyed by the settings and the encoder's weights: a retrained model is evaluated again)."""
    setting = {"eval_eps": [format_eps(e) for e in job.s["eval_eps"]], "square_queries": queries,
               "noise_sigmas": list(NOISE_SIGMAS), "eval_images": len(job.labels), "seed": seed,
               "weights_sha256": weights_sha256(encoder)}

    def compute() -> dict:
        head = ZeroShotHead(job.class_embeddings, scale=job.built.logit_scale, bias=job.built.logit_bias)
        classifier = torch.nn.Sequential(encoder, head).eval()
        settings = EvalSettings(eps=list(job.s["eval_eps"]), attacks=(), square_queries=queries,
                                noise_sigmas=NOISE_SIGMAS, seed=seed, progress=False)
        report = evaluate(classifier, job.images, job.labels, settings)
        return {"clean_accuracy": report.clean_accuracy, "square": report.square,
                "gaussian_noise": report.gaussian_noise}

    return cached_result(folder / "black_box.json", setting, compute)


def black_box_table(rows: list[dict]) -> str:
    """Markdown: one line per (radius, method), mean ± std over seeds of clean, Square at each radius and noise."""
    first = rows[0]
    square = list(first["square"])
    noise = list(first["gaussian_noise"])
    header = (["train eps", "method", "clean"] + [f"Square {e}" for e in square] + [f"noise σ={s}" for s in noise])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        cells = [r["train_eps"], r["method"], stat_text(r["clean_accuracy"])]
        cells += [stat_text(r["square"][e]) for e in square] + [stat_text(r["gaussian_noise"][s]) for s in noise]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_noise(rows: list[dict], path: Path, reference: dict) -> Path:
    """Paper Fig. 12/13 analogue: zero-shot accuracy against the Gaussian noise std, one panel per training radius."""
    radii = sorted({r["train_eps"] for r in rows}, key=lambda e: int(e.split("/")[0]))
    fig, axes = new_figure(1, len(radii), figsize=(4.6 * len(radii), 3.8), squeeze=False)
    sigmas = [0.0] + [float(s) for s in rows[0]["gaussian_noise"]]
    for axis, eps in zip(axes[0], radii):
        for r in (r for r in rows if r["train_eps"] == eps):
            stats = [r["clean_accuracy"]] + [r["gaussian_noise"][s] for s in r["gaussian_noise"]]
            axis.errorbar(sigmas, [m for m, _ in stats], yerr=[s or 0 for _, s in stats], capsize=3, label=r["method"],
                          **method_style(r["method"]))
        ref = [reference["clean_accuracy"]] + [reference["gaussian_noise"][s] for s in reference["gaussian_noise"]]
        axis.plot(sigmas, ref, color="gray", linestyle=":", marker=".", label="reference")
        axis.set(title=f"trained at {eps}", xlabel="Gaussian noise std (pixel units)", ylim=(0, 1.02))
    axes[0][0].set_ylabel("zero-shot accuracy (held out)")
    finish_axes(*axes[0])
    fig.suptitle("Accuracy under Gaussian noise (paper Fig. 12/13); mean ± std over seeds")
    return save_figure(fig, path)


def run_black_box(job: Job) -> int:
    """Trains the series' models that are missing, then evaluates Square and Gaussian noise on each."""
    args, s = job.args, job.s
    seeds = list(range(args.seed, args.seed + args.seeds))
    plan = [(seed, eps, method) for seed in seeds for eps in s["train_eps"] for method in s["methods"]]
    print(f"plan: Square ({args.square_queries} queries) and Gaussian noise {list(NOISE_SIGMAS)} on {len(plan)} models "
          f"(trained first where --out lacks them) and the reference, {len(job.labels)} held-out {job.s['eval_split']} images", flush=True)
    print(job.dual_line(), flush=True)
    reference = black_box_results(job, job.reference, args.out / "reference", args.split_seed, args.square_queries)
    results: dict[tuple[str, float], list[dict]] = {}
    for index, (seed, eps, method) in enumerate(plan):
        folder = run_folder(args.out, method, eps, seed)
        job.train_and_measure(method, train_config(args, s, method, folder, eps=eps, seed=seed), resume=True)
        print(f"== {method} {format_eps(eps)} seed {seed}: Square and noise ==", flush=True)
        encoder = load_trained(job.reference, folder)
        results.setdefault((method, eps), []).append(black_box_results(job, encoder, folder, seed, args.square_queries))
        job.progress(index + 1, len(plan))
    rows = []
    for (method, eps), members in sorted(results.items(), key=lambda item: (item[0][1], s["methods"].index(item[0][0]))):
        rows.append({"method": method, "train_eps": format_eps(eps), "seeds": seeds,
                     "clean_accuracy": mean_std([m["clean_accuracy"] for m in members]),
                     "square": {e: mean_std([m["square"][e] for m in members]) for e in members[0]["square"]},
                     "gaussian_noise": {g: mean_std([m["gaussian_noise"][g] for m in members])
                                        for g in members[0]["gaussian_noise"]}})
    table = black_box_table(rows)
    print(f"\nzero-shot accuracy on {len(job.labels)} held-out {job.s['eval_split']} images under Square "
          f"({args.square_queries} queries) and "
          f"Gaussian noise; mean ± std over {len(seeds)} seed(s); reference: clean {reference['clean_accuracy']:.3f}, "
          f"Square {reference['square']}, noise {reference['gaussian_noise']}\n{table}")
    write_json(args.out / "black_box.json", {"status": "finished", "provenance": job.provenance(),
                                             "square_queries": args.square_queries, "noise_sigmas": list(NOISE_SIGMAS),
                                             "dual": job.dual_setting(), "reference": reference, "rows": rows}, ensure_ascii=False)
    write_text_atomic(args.out / "black_box.md", table + "\n")
    plot_noise(rows, args.out / "noise.png", reference)
    print(f"\nwrote {args.out / 'black_box.json'}, black_box.md, noise.png")
    return 0
