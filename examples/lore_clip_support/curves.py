"""What the runs' own training logs show over time: held-out clean accuracy during training (the paper's Fig. 1a)
and the training time each method needs to reach a held-out robust accuracy (the paper's Table 16).

Both read the held-out probe of each run's metrics.jsonl (images never trained on; robust = PGD-10 at the
training radius), so they cost no training beyond the probes themselves. Training time is the sum of the logged
`step_seconds` up to the probe's batch (attack, K primal steps and the dual step; the probes are not counted).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional, Sequence

from lore.plotting import count_label, dodge, finish_axes, method_style, new_figure, save_figure
from lore.training.plots import read_metrics
from lore.units import format_eps

from .series import mean_std

PROBE = "probe/clean_accuracy"
ROBUST = "probe/robust_accuracy"


def probe_curve(folder: Path, key: str = PROBE) -> list[tuple[int, float, float]]:
    """(batch, training seconds so far, value of `key`) at every held-out probe of the run in `folder`."""
    seconds, curve = 0.0, []
    for record in read_metrics(folder):
        seconds += record.get("step_seconds", 0.0)
        if key in record:
            curve.append((int(record["step"]), seconds, float(record[key])))
    return curve


def plot_clean_over_training(folders: dict[tuple[str, float], Sequence[Path]], path: Path) -> Path:
    """Paper Fig. 1a: held-out clean accuracy against training batch, one panel per training radius, one line per
    method (mean ± std over the seeds' folders; every seed probes at the same batches)."""
    radii = sorted({eps for _, eps in folders})
    fig, axes = new_figure(1, len(radii), figsize=(4.6 * len(radii), 3.8), squeeze=False)
    for axis, eps in zip(axes[0], radii):
        here = [(method, runs) for (method, at), runs in sorted(folders.items()) if at == eps]
        for index, (method, runs) in enumerate(here):
            curves = [probe_curve(folder) for folder in runs]
            steps = [step for step, _, _ in curves[0]]
            stats = [mean_std([curve[i][2] for curve in curves]) for i in range(len(steps))]
            shift = dodge(index, len(here), steps[-1] - steps[0])  # equal values side by side, not on top
            axis.errorbar([step + shift for step in steps], [m for m, _ in stats], yerr=[s or 0 for _, s in stats],
                          capsize=3, label=f"{method} ({count_label(len(runs), 'seed')})", **method_style(method))
        axis.set(title=f"trained at {format_eps(eps)}", xlabel="training batch", ylim=(0, 1.02))
        axis.xaxis.get_major_locator().set_params(integer=True)
    axes[0][0].set_ylabel("held-out clean accuracy (probe)")
    finish_axes(*axes[0])
    fig.suptitle("Clean accuracy during training (paper Fig. 1a): the held-out probe")
    return save_figure(fig, path)


def reach(folder: Path, threshold: float) -> Optional[tuple[int, float]]:
    """(batch, training seconds) of the first probe at which the run's held-out robust accuracy reaches
    `threshold`; None if it never does. The batch count does not depend on the machine's load; the seconds do."""
    for batch, seconds, value in probe_curve(folder, ROBUST):
        if value >= threshold:
            return batch, seconds
    return None


def time_to_accuracy(folders: dict[tuple[str, float], Sequence[Path]], thresholds: Sequence[float]) -> list[dict]:
    """Paper Table 16: per (method, radius) and threshold, the mean training seconds to reach it over the seeds that
    did, and how many did."""
    rows = []
    for (method, eps), runs in sorted(folders.items(), key=lambda item: (item[0][1], item[0][0])):
        for threshold in thresholds:
            found = [r for r in (reach(folder, threshold) for folder in runs) if r is not None]
            rows.append({"method": method, "train_eps": format_eps(eps), "threshold": threshold,
                         "reached": len(found), "seeds": len(runs),
                         "seconds": mean_std([s for _, s in found]) if found else (math.nan, None),
                         "batches": mean_std([b for b, _ in found]) if found else (math.nan, None)})
    return rows


def time_table(rows: Sequence[dict]) -> str:
    """Markdown table of `time_to_accuracy` rows: one line per (radius, method), one column per threshold; each cell
    the seconds and the batch (mean ± std over the seeds that reached it) and how many did."""
    thresholds = sorted({r["threshold"] for r in rows})
    header = "| train eps | method | " + " | ".join(f"robust >= {t:g}" for t in thresholds) + " |"
    lines = [header, "|---|---|" + "---|" * len(thresholds)]
    keys = sorted({(r["train_eps"], r["method"]) for r in rows}, key=lambda k: (int(k[0].split("/")[0]), k[1]))
    for eps, method in keys:
        cells = []
        for t in thresholds:
            r = next(r for r in rows if (r["train_eps"], r["method"], r["threshold"]) == (eps, method, t))
            mean, std = r["seconds"]
            if not r["reached"]:
                cells.append(f"not reached (0/{r['seeds']})")
            else:
                spread = f" ± {std:.1f}" if std is not None else ""
                batch, batch_std = r["batches"]
                at = f", batch {batch:.0f}" + (f" ± {batch_std:.0f}" if batch_std else "")
                cells.append(f"{mean:.1f}{spread} s{at} ({r['reached']}/{r['seeds']})")
        lines.append(f"| {eps} | {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
