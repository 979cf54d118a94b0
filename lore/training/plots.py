"""Training curves from a run's metrics.jsonl (paper Fig. 6, 7, 9)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, Union

from matplotlib.ticker import MaxNLocator

from ..jsonio import nulls_as_nan
from ..registry import METHODS
from ..plotting import legend, mark_empty, new_figure, save_figure


def read_metrics(run_dir: Union[str, Path]) -> list[dict]:
    """The records of `run_dir/metrics.jsonl` (a torn last line from a crash is skipped)."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: is {run_dir} a `lore train` output folder?")
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(nulls_as_nan(json.loads(line)))
        except json.JSONDecodeError:
            continue
    return records


def _series(records: list[dict], key: str) -> tuple[list[int], list[float]]:
    points = [(r["step"], r[key]) for r in records if key in r]
    return [p[0] for p in points], [p[1] for p in points]


def plot_run(run_dir: Union[str, Path], rho: Optional[float] = None) -> list[Path]:
    """Draws `training_curves.png` into `run_dir`; returns the written paths.

    Panels: probe clean and robust accuracy; training robust loss; mean lambda
    (training batches and held-out probe); the held-out distribution of
    ||phi(x) - phi_0(x)||^2 / ||phi_0(x)||^2 (10/50/90 % quantiles) against the margin rho.
    """
    run_dir = Path(run_dir)
    records = read_metrics(run_dir)
    config = json.loads((run_dir / "config.json").read_text()) if (run_dir / "config.json").is_file() else {}
    if rho is None:
        rho = config.get("rho")
    method = config.get("method")
    fixed_weight = method in METHODS and METHODS[method].fixed_weight  # a constant weight, not a dual variable
    fig, axes = new_figure(2, 2, figsize=(11, 7.5))
    ax = axes[0, 0]
    for key, label in (("probe/clean_accuracy", "clean"), ("probe/robust_accuracy", "robust (PGD, train eps)")):
        ax.plot(*_series(records, key), marker="o", label=label)
    ax.set(title="held-out probe accuracy", ylabel="accuracy", ylim=(0, 1))
    legend(ax)
    ax = axes[0, 1]
    ax.plot(*_series(records, "robust_loss"), color="tab:red")
    ax.set(title="robust loss (training batches)", ylabel="robust loss", yscale="log")
    ax = axes[1, 0]
    drawn = False
    for key, label, marker in (("clean/multiplier_mean", "training batch", None), ("probe/lambda_mean", "held-out probe", "o")):
        steps, values = _series(records, key)
        if steps and not fixed_weight:
            ax.plot(steps, values, marker=marker, label=label)
            drawn = True
    if fixed_weight:
        mark_empty(ax, f"naive regularization: a fixed weight ({config.get('naive_weight', 'see config.json')}), "
                       "no multiplier")
    elif not drawn:
        mark_empty(ax, "no multiplier: this method has no constraint")
    ax.set(title="mean lambda(x)", ylabel="lambda")
    legend(ax)
    ax = axes[1, 1]
    steps, q50 = _series(records, "probe/relative_distance_q50")
    _, q10 = _series(records, "probe/relative_distance_q10")
    _, q90 = _series(records, "probe/relative_distance_q90")
    if steps:
        ax.fill_between(steps, q10, q90, alpha=0.3, label="10-90 %")
        ax.plot(steps, q50, marker="o", label="median")
    if rho is not None:
        ax.axhline(rho, color="black", linestyle="--", label=f"margin rho = {rho:g}")
    if not steps:
        mark_empty(ax, "no probe measurements")
    ax.set(title="||phi(x) - phi_0(x)||^2 / ||phi_0(x)||^2 (held out)", ylabel="relative deviation")
    legend(ax)
    for ax in axes.flat:
        ax.set_xlabel("batch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # batches are whole: no 0.25, 0.5 ticks
    return [save_figure(fig, run_dir / "training_curves.png")]
