"""The eps series (the main job's default mode): runs over (method, training eps, seed), aggregated.

A *run* is one trained model evaluated once::

    {"method": "lore", "train_eps": "32/255", "seed": 0, "clean_accuracy": 0.97,
     "robust_accuracy": {"16/255": 0.71, ...}, "within_margin": 0.93}

`aggregate` turns runs into rows of mean and standard deviation over seeds;
`series_table` prints them the paper's way, with each method's difference to
a baseline (FARE) in accuracy points, marked up or down; `plot_series` draws
clean and robust accuracy against the training eps; `plot_constraint` draws
the held-out clean deviation, margin satisfaction and multiplier over
training (paper Fig. 6, 7 and 9).
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from pathlib import Path
from typing import Optional, Sequence

from lore.jsonio import finite_or_null
from lore.plotting import dodge, finish_axes, mark_empty, method_style, new_figure, save_figure
from lore.training.plots import read_metrics
from lore.units import parse_eps

Stat = tuple[float, Optional[float]]
"""(mean, sample standard deviation; None for one seed: a spread that was never measured is not 0)."""


def mean_std(values: Sequence[float]) -> Stat:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None


def aggregate(runs: Sequence[dict]) -> list[dict]:
    """Mean and standard deviation over seeds per (method, train_eps), in first-seen order.

    Returns:
        [{"method", "train_eps", "seeds": [..], "clean_accuracy": Stat, "robust_accuracy": {eps: Stat},
          "within_margin": Stat}, ...]
    """
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for run in runs:
        groups[(run["method"], run["train_eps"])].append(run)
    rows = []
    for (method, train_eps), members in groups.items():
        eps_labels = list(members[0]["robust_accuracy"])
        rows.append({
            "method": method,
            "train_eps": train_eps,
            "seeds": [m["seed"] for m in members],
            "clean_accuracy": mean_std([m["clean_accuracy"] for m in members]),
            "robust_accuracy": {e: mean_std([m["robust_accuracy"][e] for m in members]) for e in eps_labels},
            "within_margin": mean_std([m["within_margin"] for m in members]),
        })
    return rows


def stat_text(stat: Stat, digits: int = 3) -> str:
    """"mean ± std" of a `mean_std` pair, or the mean alone where one seed gives no std."""
    mean, std = stat
    return f"{mean:.{digits}f}" if std is None else f"{mean:.{digits}f} ± {std:.{digits}f}"


def _cell(stat: Stat, baseline: Optional[Stat]) -> str:
    mean = stat[0]
    text = stat_text(stat)
    if baseline is not None:
        points = 100 * (mean - baseline[0])
        arrow = "↑" if points > 0 else "↓" if points < 0 else "="
        text += f" ({arrow}{abs(points):.1f})"
    return text


def series_table(rows: Sequence[dict], reference: Optional[dict] = None, *, baseline: str = "fare",
                 markdown: bool = False) -> str:
    """The series as a table: one line per (training eps, method), columns clean, robust per eval eps, in margin.

    Cells read "mean ± std"; other methods' cells also give their difference to `baseline` at the same training
    eps, in accuracy points, as (↑x) or (↓x). `reference` (a `zero_shot_results` dict) is the first line.
    """
    eps_labels = list(rows[0]["robust_accuracy"]) if rows else list((reference or {}).get("robust_accuracy", {}))
    header = ["train eps", "method", "clean"] + [f"robust {e}" for e in eps_labels] + ["in margin"]
    lines = []
    if reference is not None:
        lines.append(["—", "reference", f"{reference['clean_accuracy']:.3f}"]
                     + [f"{reference['robust_accuracy'][e]:.3f}" for e in eps_labels]
                     + [f"{reference['within_margin']:.3f}"])
    by_key = {(r["method"], r["train_eps"]): r for r in rows}
    for row in rows:
        base = by_key.get((baseline, row["train_eps"])) if row["method"] != baseline else None
        lines.append([row["train_eps"], row["method"], _cell(row["clean_accuracy"], base and base["clean_accuracy"])]
                     + [_cell(row["robust_accuracy"][e], base and base["robust_accuracy"][e]) for e in eps_labels]
                     + [_cell(row["within_margin"], None)])
    if markdown:
        out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        return "\n".join(out + ["| " + " | ".join(cells) + " |" for cells in lines])
    widths = [max(len(str(c)) for c in column) for column in zip(header, *lines)]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip() for cells in [header, *lines])


def multiplier_table(runs: Sequence[dict], bullet: str = "  ") -> str:
    """How LORE's lambda(x) ends each run, from its last held-out probe (results.json's `final_probe`).

    One line per run with a per-sample multiplier: training eps, seed, the share of held-out images within
    their margin, the share near it (outside or within 10 %: ||phi - phi_0||^2 > 0.9 m), mean lambda over the
    near and over the other images and their ratio, and the rank correlation of lambda(x) with each image's
    use of its margin. Where no image is near its margin the constraint binds nowhere at the end of training:
    the line says so instead of a ratio over an empty group. Each line starts with `bullet` ("- " for a
    markdown list). Empty string when no run has such a probe.
    """
    lines = []
    for run in runs:
        probe = finite_or_null(run.get("final_probe") or {})  # an undefined mean (NaN or null) reads None
        if "lambda_inside_mean" not in probe:
            continue
        near = probe.get("near_fraction")
        near_mean, inside_mean = probe.get("lambda_near_mean"), probe["lambda_inside_mean"]
        if near_mean is None:
            group = f"no image near its margin (the constraint binds nowhere); lambda {inside_mean:.3g}"
        elif inside_mean is None:
            group = f"every image near its margin; lambda {near_mean:.3g}"
        else:
            group = f"lambda near {near_mean:.3g} / inside {inside_mean:.3g}" + (
                f" = {near_mean / inside_mean:.1f}x" if inside_mean > 0 else " (lambda 0 on every image inside)")
        correlation = probe.get("lambda_deviation_rank_correlation")
        lines.append(f"{bullet}{run['method']} {run['train_eps']} seed {run['seed']}: in margin {probe['within_margin']:.3f}, "
                     + (f"near {near:.3f}, " if near is not None else "") + group
                     + ("" if correlation is None else f"; rank correlation with the margin used {correlation:+.2f}")
                     + f" (batch {probe['step']})")
    return "\n".join(lines)


def plot_series(rows: Sequence[dict], reference: Optional[dict], path: Path) -> Path:
    """Clean and robust accuracy (mean ± std over seeds) against the training eps, one line per method."""
    eps_labels = list(rows[0]["robust_accuracy"])
    panels = [("clean_accuracy", None, "clean")] + [("robust_accuracy", e, f"robust at {e}") for e in eps_labels]
    fig, axes = new_figure(1, len(panels), figsize=(3.6 * len(panels), 3.6), squeeze=False)
    methods = list(dict.fromkeys(r["method"] for r in rows))
    ticks = sorted({parse_eps(r["train_eps"]) * 255 for r in rows})
    for ax, (key, eps, title) in zip(axes[0], panels):
        for index, method in enumerate(methods):  # side by side at each radius: equal values stay visible
            mine = sorted((r for r in rows if r["method"] == method), key=lambda r: parse_eps(r["train_eps"]))
            x = [parse_eps(r["train_eps"]) * 255 + dodge(index, len(methods), ticks[-1] - ticks[0]) for r in mine]
            stats = [r[key] if eps is None else r[key][eps] for r in mine]
            ax.errorbar(x, [s[0] for s in stats], yerr=[s[1] or 0.0 for s in stats], capsize=3, label=method,
                        **method_style(method))
        if reference is not None:
            value = reference["clean_accuracy"] if eps is None else reference["robust_accuracy"][eps]
            ax.axhline(value, color="gray", linestyle="--", label="reference")
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
        ax.set(title=title, xlabel="training eps (x/255)", ylabel="zero-shot accuracy")
    finish_axes(*axes[0])
    seeds = max(len(r["seeds"]) for r in rows)
    fig.suptitle("the eps series: accuracy vs training radius; "
                 + (f"error bars: std over {seeds} seeds" if seeds > 1 else "one seed: no spread measured"))
    return save_figure(fig, path)


def plot_constraint(runs: dict[str, Path], rho: float, path: Path, *, train_eps: str) -> Path:
    """Held-out clean deviation, margin satisfaction and multiplier over training (paper Fig. 6, 7, 9).

    Args:
        runs: {label: run folder with metrics.jsonl}, e.g. FARE and LORE at the largest training eps.
        rho: the margin scale drawn as a reference line on the relative deviation.
        path: the PNG to write.
        train_eps: the runs' training radius (e.g. "48/255"), named in the title.
    """
    fig, axes = new_figure(1, 3, figsize=(16, 4.2))
    lambda_drawn = False
    for label, folder in runs.items():
        records = [r for r in read_metrics(folder) if "probe/relative_distance_q50" in r]
        steps = [r["step"] for r in records]
        moved = [r for r in records if r["probe/relative_distance_q10"] > 0]  # log axis: phi = phi_0 at step 0
        moved_steps = [r["step"] for r in moved]
        line, = axes[0].plot(moved_steps, [r["probe/relative_distance_q50"] for r in moved], label=f"{label} median",
                             **method_style(label))
        axes[0].fill_between(moved_steps, [r["probe/relative_distance_q10"] for r in moved],
                             [r["probe/relative_distance_q90"] for r in moved], alpha=0.2, color=line.get_color())
        axes[1].plot(steps, [r["probe/within_margin"] for r in records], label=label, **method_style(label))
        with_lambda = [r for r in records if "probe/lambda_mean" in r]
        if with_lambda:
            lambda_drawn = True
            lam_steps = [r["step"] for r in with_lambda]
            line, = axes[2].plot(lam_steps, [r["probe/lambda_mean"] for r in with_lambda], label=f"{label} mean",
                                 **method_style(label))
            if "probe/lambda_q10" in with_lambda[0]:
                axes[2].fill_between(lam_steps, [r["probe/lambda_q10"] for r in with_lambda],
                                     [r["probe/lambda_q90"] for r in with_lambda], alpha=0.2, color=line.get_color(),
                                     label=f"{label} 10-90 %")
    axes[0].axhline(rho, color="black", linestyle="--", label=f"rho = {rho:g}")
    axes[0].set(title="held out: ||phi(x) - phi_0(x)||^2 / ||phi_0(x)||^2 (10-90 % band)", xlabel="batch", yscale="log",
                ylabel="relative deviation")
    axes[1].set(title="held out: fraction within the margin", xlabel="batch", ylim=(0, 1.02), ylabel="fraction")
    if not lambda_drawn:
        mark_empty(axes[2], "no multiplier in these runs")
    axes[2].set(title="held out: lambda(x) (mean, 10-90 %)", xlabel="batch", yscale="log" if lambda_drawn else "linear",
                ylabel="lambda")
    finish_axes(*axes)
    fig.suptitle(f"during training at eps = {train_eps}")
    return save_figure(fig, path)
