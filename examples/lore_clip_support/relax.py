"""`--sweep relax`: can one resilient price replace a margin tuned per training radius?

At every `--train-eps` radius over `--seeds`, the main job trains FARE, LORE at each margin of `RHO_GRID` (the hard
constraint, the paper's) and LORE with a quadratic relaxation at each price of `PRICES` (rho 0.1 relaxed by
u(x) = lambda(x) / price; `constrained.relaxation`). Each setting is scored per radius as the preset selection
scores it (tools/preset_selection.py):

    score = (clean accuracy + robust accuracy at the training radius) / 2,

robust taken at the largest evaluation radius not above the training radius. The choice, made on the validation
split (`--eval-split validation`): one price for all radii (the highest mean score over the radii) and the best
margin per radius. `--selected-on DIR` (a validation run's folder) then trains only FARE, that price and those
margins, on the split this job evaluates (the test split by default), and reports the price's gap to the
per-radius best margin: the goal is within 2 points of clean and of robust accuracy at every radius.

Writes relax.json, relax.md and relax.png (accuracy against training radius, one line per setting).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from lore.jsonio import write_json, write_text_atomic
from lore.plotting import finish_axes, method_style, new_figure, save_figure
from lore.units import format_eps, parse_eps

from .job import Job, run_folder, train_config
from .scoring import scored_radius, selection_score
from .series import mean_std, stat_text

RHO_GRID = (0.03, 0.1, 0.3)
PRICES = (3.0, 10.0, 30.0, 100.0)
RELAXED_RHO = 0.1  # the margin a relaxed run starts from: the paper's
GOAL_POINTS = 2.0


def candidates(selected: Optional[dict], radii: list[float], rhos=RHO_GRID,
               prices=PRICES) -> list[tuple[str, float, Optional[float], Optional[float]]]:
    """(setting label, training radius, rho, price) of every LORE training; the chosen ones with `selected`."""
    plan = []
    for eps in radii:
        if selected is None:
            plan += [(f"rho {rho:g}", eps, rho, None) for rho in rhos]
            plan += [(f"relax {price:g}", eps, RELAXED_RHO, price) for price in prices]
        else:
            rho = selected["best_rho"].get(format_eps(eps))
            if rho is None:
                raise ValueError(f"--selected-on: the validation run chose no rho at {format_eps(eps)}; it covered "
                                 f"{sorted(selected['best_rho'])}")
            plan += [(f"rho {rho:g}", eps, rho, None), (f"relax {selected['price']:g}", eps, RELAXED_RHO,
                                                         selected["price"])]
    return plan


def read_selection(folder: Path) -> dict:
    """The price and per-radius margins a validation run chose (its relax.json), refused unless it was one."""
    payload = json.loads((Path(folder) / "relax.json").read_text())
    if payload.get("eval_split") != "validation":
        raise ValueError(f"--selected-on {folder}: its choice was made on the {payload.get('eval_split')} split; "
                         "choose on validation (--eval-split validation)")
    return payload["choice"]


def choose(rows: list[dict]) -> dict:
    """One price (the best mean score over the radii) and the best margin per radius."""
    radii = sorted({r["train_eps"] for r in rows}, key=parse_eps)
    prices = sorted({r["price"] for r in rows if r["price"] is not None})
    mean_score = {p: sum(r["score"][0] for r in rows if r["price"] == p) / len(radii) for p in prices}
    best_rho = {}
    for eps in radii:
        margins = [r for r in rows if r["train_eps"] == eps and r["price"] is None and r["rho"] is not None]
        best_rho[eps] = max(margins, key=lambda r: r["score"][0])["rho"]
    return {"price": max(mean_score, key=mean_score.get), "mean_score_by_price": mean_score, "best_rho": best_rho}


def summarise(results: dict, eval_eps: list[float]) -> list[dict]:
    """Mean ± std over seeds per (setting, radius), with the score."""
    rows = []
    for (label, eps, rho, price), members in results.items():
        at = scored_radius(format_eps(eps), [format_eps(e) for e in eval_eps])
        scores = [selection_score(m["clean_accuracy"], m["robust_accuracy"], format_eps(eps)) for m in members]
        rows.append({"setting": label, "train_eps": format_eps(eps), "rho": rho, "price": price, "robust_at": at,
                     "seeds": [m["seed"] for m in members],
                     "clean_accuracy": mean_std([m["clean_accuracy"] for m in members]),
                     "robust_accuracy": mean_std([m["robust_accuracy"][at] for m in members]),
                     "within_margin": mean_std([m["within_margin"] for m in members]),
                     "score": mean_std(scores)})
    return rows


def gaps(rows: list[dict], choice: dict) -> list[dict]:
    """Per radius: the chosen price's clean and robust accuracy minus the best margin's, in points."""
    out = []
    for eps, rho in choice["best_rho"].items():
        margin = next(r for r in rows if r["train_eps"] == eps and r["price"] is None and r["rho"] == rho)
        relaxed = next(r for r in rows if r["train_eps"] == eps and r["price"] == choice["price"])
        clean = 100 * (relaxed["clean_accuracy"][0] - margin["clean_accuracy"][0])
        robust = 100 * (relaxed["robust_accuracy"][0] - margin["robust_accuracy"][0])
        out.append({"train_eps": eps, "rho": rho, "clean_points": clean, "robust_points": robust,
                    "within_goal": clean >= -GOAL_POINTS and robust >= -GOAL_POINTS})
    return out


def table(rows: list[dict]) -> str:
    lines = ["| train eps | setting | clean | robust (at) | in margin | score |", "|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (parse_eps(r["train_eps"]), r["setting"])):
        lines.append(f"| {r['train_eps']} | {r['setting']} | {stat_text(r['clean_accuracy'])} | "
                     f"{stat_text(r['robust_accuracy'])} ({r['robust_at']}) | {stat_text(r['within_margin'])} | "
                     f"{stat_text(r['score'], 4)} |")
    return "\n".join(lines)


def plot(rows: list[dict], choice: dict, path: Path) -> Path:
    """Clean and robust accuracy (at the training radius) against the training radius: FARE, the best margin per
    radius, and the chosen price."""
    radii = sorted({r["train_eps"] for r in rows}, key=parse_eps)
    series = {"fare": [next(r for r in rows if r["train_eps"] == e and r["setting"] == "fare") for e in radii],
              "lore, best rho per radius": [next(r for r in rows if r["train_eps"] == e and r["price"] is None
                                                 and r["rho"] == choice["best_rho"][e]) for e in radii],
              f"lore, relax {choice['price']:g}": [next(r for r in rows if r["train_eps"] == e
                                                        and r["price"] == choice["price"]) for e in radii]}
    fig, axes = new_figure(1, 2, figsize=(10, 4))
    x = [255 * parse_eps(e) for e in radii]
    for name, members in series.items():
        style = method_style("fare" if name == "fare" else "lore")
        if name.startswith("lore, relax"):
            style = {**style, "linestyle": ":", "marker": "s"}
        for axis, key in zip(axes, ("clean_accuracy", "robust_accuracy")):
            axis.errorbar(x, [m[key][0] for m in members], yerr=[m[key][1] or 0 for m in members], capsize=3,
                          label=name, **style)
    axes[0].set(title="clean", xlabel="training eps (x/255)", ylabel="zero-shot accuracy")
    axes[1].set(title="robust, at the largest evaluated eps <= the training eps", xlabel="training eps (x/255)")
    finish_axes(*axes)
    fig.suptitle("one resilient price against a margin chosen per radius")
    return save_figure(fig, path)


def run_relax_sweep(job: Job) -> int:
    args, s = job.args, job.s
    seeds = list(range(args.seed, args.seed + args.seeds))
    selected = read_selection(args.selected_on) if getattr(args, "selected_on", None) else None
    plan = [("fare", eps, None, None) for eps in s["train_eps"]] + candidates(
        selected, s["train_eps"], args.relax_rhos or RHO_GRID, args.relax_prices or PRICES)
    trainings = [(setting, seed) for setting in plan for seed in seeds]
    print(f"plan: {len(trainings)} trainings ({len(plan)} settings x {len(seeds)} seeds) on the "
          f"{s['eval_split']} split{job.expected(['fare' if p[0] == 'fare' else 'lore' for p, _ in trainings])}",
          flush=True)
    results: dict[tuple, list[dict]] = {}
    for index, ((label, eps, rho, price), seed) in enumerate(trainings):
        if label == "fare":
            config = train_config(args, s, "fare", run_folder(args.out, "fare", eps, seed), eps=eps, seed=seed)
        else:
            tag = f"-rho{rho:g}" + ("" if price is None else f"-relax{price:g}")
            extra = {} if price is None else {"relax": "quadratic", "relax_price": price}
            config = train_config(args, s, "lore", run_folder(args.out, "lore", eps, seed, tag=tag), eps=eps,
                                  seed=seed, rho=rho, **extra)
        result = job.train_and_measure(label, config, resume=args.resume)
        results.setdefault((label, eps, rho, price), []).append({"seed": seed, **result})
        job.progress(index + 1, len(trainings))
    rows = summarise(results, list(s["eval_eps"]))
    choice = selected if selected is not None else choose(rows)
    found = gaps(rows, choice)
    payload = {"status": "finished", "provenance": job.provenance(), "eval_split": s["eval_split"], "seeds": seeds,
               "rows": rows, "choice": choice, "gaps": found}
    write_json(args.out / "relax.json", payload)
    verdict = "\n".join(f"- {g['train_eps']}: relax {choice['price']:g} minus rho {g['rho']:g}: clean "
                        f"{g['clean_points']:+.1f}, robust {g['robust_points']:+.1f} points "
                        f"({'within' if g['within_goal'] else 'outside'} {GOAL_POINTS:g})" for g in found)
    where = "chosen here" if selected is None else f"chosen on validation ({args.selected_on})"
    text = (f"{table(rows)}\n\nprice {choice['price']:g} and the best rho per radius {where}:\n{verdict}\n")
    write_text_atomic(args.out / "relax.md", text)
    plot(rows, choice, args.out / "relax.png")
    print(f"\n{len(job.labels)} {s['eval_split']} images, mean ± std over {len(seeds)} seed(s):\n{text}")
    print(f"wrote {args.out / 'relax.json'}, relax.md, relax.png")
    return 0
