"""The default mode of `examples/lore_clip.py`: the eps series, optionally with the fixed-lambda ablation (the
sweeps of rho, lambda, K, margins and the dual are in `sweeps`; Square and noise in `black_box`)."""

from __future__ import annotations

from lore.jsonio import write_json, write_text_atomic
from lore.units import format_eps

from lore.training.plots import read_metrics

from .compare import plot_accuracy
from .curves import plot_clean_over_training, time_table, time_to_accuracy

from .job import EQUAL_UPDATES_LABEL, Job, run_entry, run_folder, train_config
from .series import aggregate, multiplier_table, plot_constraint, plot_series, series_table

def baseline_text(s: dict) -> str:
    """Which FARE (and TeCoA) a table shows: its authors' one update per adversarial batch, or K (NAME-k)."""
    equal = f"K = {s['primal_steps']} updates per adversarial batch (the equal-updates control)"
    plain = ("1 encoder update per adversarial batch, as its authors trained them" if s["baseline_updates"] == "authors"
             else equal)
    parts = [f"FARE/TeCoA: {plain}"]
    if any(m.endswith(EQUAL_UPDATES_LABEL) for m in s["methods"]):
        parts.append(f"fare-k/tecoa-k: {equal}")
    return "; ".join(parts)


def run_series(job: Job) -> int:
    """The default mode: every method at every training radius and seed; the ε-series table and plots."""
    args, s = job.args, job.s
    seeds = list(range(args.seed, args.seed + args.seeds))
    plan = [(seed, eps, method) for seed in seeds for eps in s["train_eps"] for method in s["methods"]]
    expected = job.expected([m for _, _, m in plan])
    print(f"plan: {len(plan)} trainings ({len(s['methods'])} methods x {len(s['train_eps'])} radii x {len(seeds)} seeds) "
          f"and {len(plan) + 1} evaluations on {len(job.labels)} images{expected}", flush=True)
    if "lore" in s["methods"]:
        print(job.dual_line(), flush=True)
    reference = job.measure(job.reference, args.out / "reference", args.split_seed)
    runs, results, folders = [], {}, {}
    for index, (seed, eps, method) in enumerate(plan):
        folder = run_folder(args.out, method, eps, seed)
        result = job.train_and_measure(method, train_config(args, s, method, folder, eps=eps, seed=seed), resume=args.resume)
        runs.append(run_entry(method, eps, seed, result, folder))
        results[(method, eps, seed)], folders[(method, eps, seed)] = result, folder
        job.progress(index + 1, len(plan))
    if args.fixed_lambda:
        runs += fixed_lambda_runs(job, [(seed, eps, folders[("lore", eps, seed)]) for seed in seeds for eps in s["train_eps"]])

    rows = aggregate(runs)
    by_method = {(m, e): [folders[(m, e, seed)] for seed in seeds] for m in s["methods"] for e in s["train_eps"]}
    timing = time_to_accuracy(by_method, TIME_THRESHOLDS)
    spread = f"mean ± std over {len(seeds)} seeds" if len(seeds) > 1 else "one seed (no spread measured)"
    print(f"\nzero-shot accuracy on {len(job.labels)} held-out {job.s['eval_split']} images, {spread}; robust = "
          f"worst case of APGD-CE and APGD-DLR-T ({s['apgd_targets']} targets), {s['apgd_iter']} iterations; "
          f"(↑/↓ x) = difference to FARE in points; "
          f"in margin = share with ||phi-phi_0||^2 <= {s['rho']:g} ||phi_0||^2; {baseline_text(s)}")
    print(series_table(rows, reference))
    heading = f"LORE's lambda(x) on the held-out probe ({s['probe_size']} images) at the end of training:"
    multipliers = multiplier_table(runs)
    if multipliers:
        print(f"\n{heading}\n{multipliers}")
    every = getattr(args, "probe_every", None) or max(1, -(-(s["steps"] or 1000) // 4))
    timing_heading = (f"Training time to reach a held-out probe robust accuracy (PGD-10 at the training radius, "
                      f"{s['probe_size']} images; seconds of training steps, probes excluded, and the batch; mean ± "
                      f"std over the seeds that reached it). The probe runs every {every} batches, so each time is "
                      f"known to within {every} batches of that method; the seconds follow the machine's load, the "
                      "batches do not:")
    timing_text = time_table(timing)
    print(f"\n{timing_heading}\n{timing_text}")
    largest = s["train_eps"][-1]
    headline = {"reference": reference, **{m: results[(m, largest, seeds[0])] for m in s["methods"]}}
    payload = {
        "status": "finished",
        "provenance": job.provenance(),
        "setting": {"model": args.model, "train_eps": format_eps(largest), "train_eps_series": [format_eps(e) for e in s["train_eps"]],
                    "eval_eps": [format_eps(e) for e in s["eval_eps"]], "rho": s["rho"], "naive_weight": args.naive_weight,
                    "steps": s["steps"], "batch_size": s["batch_size"], "eval_samples": len(job.labels),
                    "apgd_iter": s["apgd_iter"], "apgd_targets": s["apgd_targets"], "quick": args.quick, "seed": args.seed, "seeds": seeds,
                    **job.dual_setting(),
                    "lr": s["lr"], "baseline_updates": s["baseline_updates"],
                    "warmup_steps": s["warmup_steps"]},
        "methods": headline,
        "runs": runs,
        "series": rows,
        "time_to_robust_accuracy": timing,
    }
    write_json(args.out / "results.json", payload, ensure_ascii=False)
    as_list = multiplier_table(runs, bullet="- ")  # markdown: one list item per run
    write_text_atomic(args.out / "series.md", series_table(rows, reference, markdown=True) + "\n"
                      + (f"\n{heading}\n{as_list}\n" if as_list else "") + f"\n{timing_heading}\n\n{timing_text}\n")
    plot_series(rows, reference, args.out / "series.png")
    plot_clean_over_training(by_method, args.out / "clean_over_training.png")
    at_largest = {m: folders[(m, largest, seeds[0])] for m in s["methods"]}
    plot_constraint(at_largest, s["rho"], args.out / "constraint.png", train_eps=format_eps(largest))
    plot_accuracy(headline, args.out / "accuracy.png", train_eps=format_eps(largest))
    print(f"\nwrote {args.out / 'results.json'}, series.md, series.png, clean_over_training.png, constraint.png, "
          "accuracy.png")
    return 0


FIXED = "naive, LORE's lambda"
TIME_THRESHOLDS = (0.1, 0.2, 0.3, 0.35)  # held-out probe robust accuracy at the training radius: Table 16's thresholds


def fixed_lambda_runs(job: Job, lore_runs: list[tuple[int, float, object]]) -> list[dict]:
    """Naive regularization with lambda fixed at each LORE run's final mean held-out lambda (same radius, seed):
    whatever LORE gains over it comes from the multiplier adapting per sample and in time."""
    args, s = job.args, job.s
    runs = []
    for index, (seed, eps, lore_folder) in enumerate(lore_runs):
        probes = [r for r in read_metrics(lore_folder) if "probe/lambda_mean" in r]
        weight = round(probes[-1]["probe/lambda_mean"], 4)
        folder = run_folder(args.out, "naive", eps, seed, tag="-lorelambda")
        config = train_config(args, s, "naive", folder, eps=eps, seed=seed, naive_weight=weight)
        result = job.train_and_measure(f"{FIXED} = {weight:g}", config, resume=args.resume)
        runs.append(run_entry(FIXED, eps, seed, result, folder) | {"naive_weight": weight})
        print(f"-- fixed-lambda ablation: {index + 1}/{len(lore_runs)} done", flush=True)
    return runs
