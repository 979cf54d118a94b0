"""Comparing methods on one reference model: train each, evaluate zero-shot clean and robust accuracy, plot.

Part of the main job's plumbing (`examples/lore_clip.py`, also used by `examples/tecoa_variants.py`), not of
the `lore` library.
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import Optional, Sequence

import torch

from lore.evaluation.report import plot_robustness
from lore.evaluation.suite import EvalSettings, evaluate, fraction
from lore.heads import ZeroShotHead
from lore.registry import METHODS
from lore.plotting import finish_axes, method_color, method_style, new_figure, save_figure
from lore.training.config import TrainConfig
from lore.training.engine import train
from lore.training.plots import read_metrics


class RunInterrupted(RuntimeError):
    """A training run stopped (SIGTERM/SIGINT) before its last batch; its checkpoint allows a resume."""

    def __init__(self, folder: Path, step: int, total: int) -> None:
        super().__init__(f"training in {folder} was interrupted at batch {step}/{total}; its checkpoint is kept, "
                         "run again with --resume to continue")
        self.folder, self.step, self.total = folder, step, total


#: the attacks behind every robust accuracy of these helpers (the worst case of the cascade)
ROBUST_CASCADE = "apgd-ce+apgd-t"

def train_fresh(config: TrainConfig, *, resume: bool = False) -> Path:
    """Trains `config` into `config.output` (the caller owns that folder); returns it once the run has finished.

    Args:
        config: the run.
        resume: continue the run's checkpoint if the folder holds one (a finished run is reused as it is;
            a checkpoint of other settings is refused); otherwise the folder is emptied and training starts over.

    Raises:
        RunInterrupted: the run was stopped by a signal before its last batch.
    """
    folder = Path(config.output)
    if resume and (folder / "last.pt").is_file():
        result = train(config, resume=True)
    else:
        if folder.exists():
            shutil.rmtree(folder)
        result = train(config)
    if result.status != "finished":
        raise RunInterrupted(folder, result.step, result.total_steps)
    return folder


def load_trained(reference_encoder: torch.nn.Module, run: Path) -> torch.nn.Module:
    """A copy of `reference_encoder` carrying the weights of `run/last.pt`, in eval mode."""
    encoder = copy.deepcopy(reference_encoder)
    encoder.load_state_dict(torch.load(Path(run) / "last.pt", map_location="cpu", weights_only=True)["encoder"])
    return encoder.eval()


def zero_shot_results(encoder, reference_encoder, class_embeddings: torch.Tensor, images: torch.Tensor,
                      labels: torch.Tensor, *, eps: Sequence[float], n_iter: int, rho: float, seed: int = 0,
                      n_targets: int = 9, scale: float = 100.0, bias: float = 0.0) -> dict:
    """Zero-shot clean and APGD-CE + APGD-DLR-T (`n_targets` target classes) robust accuracy, margin satisfaction
    and alignment; the head's `scale` and `bias` are the model's (`BuiltModel.logit_scale`, `logit_bias`).

    Returns:
        {"clean_accuracy", "robust_accuracy": {"8/255": worst case, ...}, "robust_accuracy_apgd_ce": {...},
         "within_margin": fraction of images with ||phi - phi_0||^2 <= rho ||phi_0||^2,
         "relative_deviation": {"q50", "q90"} quantiles of ||phi - phi_0||^2 / ||phi_0||^2 over the images,
         "alignment", "warnings"}.
    """
    classifier = torch.nn.Sequential(encoder, ZeroShotHead(class_embeddings, scale=scale, bias=bias)).eval()
    settings = EvalSettings(eps=list(eps), n_iter=n_iter, batch_size=128, seed=seed, n_targets=n_targets)
    report = evaluate(classifier, images, labels, settings, embed=encoder, class_embeddings=class_embeddings)
    with torch.no_grad():
        ref, emb = reference_encoder(images), encoder(images)
        distance, norm = (emb - ref).pow(2).sum(1), ref.pow(2).sum(1)
        within = fraction(distance <= rho * norm)
        deviation = torch.quantile((distance / norm.clamp_min(1e-12)).double().cpu(), torch.tensor([0.5, 0.9], dtype=torch.float64))
    return {
        "clean_accuracy": report.clean_accuracy,
        "robust_accuracy": {e: row[ROBUST_CASCADE] for e, row in report.robust_accuracy.items()},
        "robust_accuracy_apgd_ce": {e: row["apgd-ce"] for e, row in report.robust_accuracy.items()},
        "within_margin": within,
        "relative_deviation": {"q50": float(deviation[0]), "q90": float(deviation[1])},
        "alignment": report.alignment,
        "warnings": report.warnings,
    }


def results_table(results: dict[str, dict]) -> str:
    """A fixed-width table of `zero_shot_results` per method."""
    eps_labels = list(next(iter(results.values()))["robust_accuracy"])
    lines = [f"{'method':<11}{'clean':>7}" + "".join(f"{'rob ' + e:>12}" for e in eps_labels) + f"{'in margin':>11}{'align':>8}"]
    for name, r in results.items():
        lines.append(f"{name:<11}{r['clean_accuracy']:>7.3f}" + "".join(f"{r['robust_accuracy'][e]:>12.3f}" for e in eps_labels)
                     + f"{r['within_margin']:>11.3f}{(r['alignment'] or float('nan')):>8.3f}")
    return "\n".join(lines)


def _config_method(run: Path) -> Optional[str]:
    """The method a run folder's config.json names (None without one)."""
    config = run / "config.json"
    return json.loads(config.read_text()).get("method") if config.is_file() else None


def plot_training_comparison(runs: dict[str, Path], rho: float, path: Path, *, train_eps: str) -> Path:
    """Mean lambda on training batches, held-out margin satisfaction and clean accuracy over training, per method,
    at training radius `train_eps` (named in the title)."""
    panels = (
        ("clean/multiplier_mean", "mean lambda(x) (training batches)", None),
        ("probe/within_margin", f"held out: fraction with ||phi-phi_0||^2 <= {rho:g} ||phi_0||^2", (0, 1.02)),
        ("probe/clean_accuracy", "held out: zero-shot clean accuracy", (0, 1.02)),
    )
    fig, axes = new_figure(1, 3, figsize=(15, 4))
    for name, run in runs.items():
        records = read_metrics(run)
        method = _config_method(run)
        fixed_weight = method in METHODS and METHODS[method].fixed_weight  # a constant weight, not a multiplier
        for ax, (key, _, _) in zip(axes, panels):
            points = [(r["step"], r[key]) for r in records if key in r]
            if points and not (fixed_weight and key == "clean/multiplier_mean"):
                style = method_style(name) | ({} if key.startswith("probe") else {"marker": None})
                ax.plot(*zip(*points), label=name, **style)
    for ax, (_, title, limits) in zip(axes, panels):
        ax.set(title=title, xlabel="batch", ylim=limits)
    finish_axes(*axes)
    fig.suptitle(f"training at eps = {train_eps}")
    return save_figure(fig, path)


def plot_accuracy(results: dict[str, dict], path: Path, *, train_eps: str) -> Path:
    """Clean (eps 0) and robust accuracy (`zero_shot_results`' cascade) against eps, one line per method, for
    models trained at `train_eps` (named in the title)."""
    reports = {name: {"clean_accuracy": r["clean_accuracy"],
                      "robust_accuracy": {eps: {ROBUST_CASCADE: v} for eps, v in r["robust_accuracy"].items()}}
               for name, r in results.items()}
    return plot_robustness(reports, path, setting=f"trained at {train_eps}")


def plot_front(points: dict[str, list[tuple[float, float, float]]], eps_label: str, path: Path,
               single: Optional[dict[str, tuple[float, float]]] = None) -> Path:
    """Robust vs clean accuracy for families of models, each point annotated with its parameter (Fig. 1b).

    Args:
        points: {family: [(parameter value, clean, robust), ...]}, drawn as annotated lines.
        eps_label: the eval radius of the robust accuracy, for the axis label.
        path: the PNG to write.
        single: {name: (clean, robust)} drawn as lone markers (FARE, the reference).
    """
    fig, ax = new_figure(figsize=(6.5, 4.8))
    for family, rows in points.items():
        rows = sorted(rows, key=lambda r: r[1])
        ax.plot([r[1] for r in rows], [r[2] for r in rows], marker="o", label=family, color=method_color(family))
        for value, clean, robust in rows:
            ax.annotate(f"{value:g}", (clean, robust), textcoords="offset points", xytext=(4, 4), fontsize=8)
    for (name, (clean, robust)), marker in zip((single or {}).items(), "s^Dv*"):
        ax.plot([clean], [robust], marker=marker, markersize=9, linestyle="none", label=name, color=method_color(name))
    ax.set(xlabel="clean zero-shot accuracy", ylabel=f"robust accuracy at {eps_label}",
           title="robustness-accuracy front (paper Fig. 1b)")
    finish_axes(ax)
    return save_figure(fig, path)
