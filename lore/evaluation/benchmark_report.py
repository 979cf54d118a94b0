"""The benchmark report: report.json, a Markdown table in the layout of the paper's Table 3, and a bar plot.

The average zero-shot accuracy is the unweighted mean over the zero-shot
datasets evaluated (ImageNet excluded, as in the paper); it names the datasets
it covers, and the table says "k of 13" when some are missing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ..data.zero_shot import DISPLAY_NAMES, ZERO_SHOT_DATASETS
from ..jsonio import write_json, write_text_atomic
from ..plotting import legend, new_figure, save_figure


def model_summary(results: dict[str, dict], datasets: Sequence[str]) -> dict:
    """{"datasets": {NAME: {"clean", "robust", "samples", ...}}, "average_zero_shot": {...}} of one model."""
    done = {name: results[name] for name in datasets if name in results}
    zero_shot = [name for name in done if name in ZERO_SHOT_DATASETS]
    average: dict = {"datasets": zero_shot, "of": sum(1 for d in datasets if d in ZERO_SHOT_DATASETS)}
    if zero_shot:
        average["clean"] = float(np.mean([done[n]["clean"] for n in zero_shot]))
        eps_lists = [set(done[n]["robust"]) for n in zero_shot]
        average["robust"] = {eps: float(np.mean([done[n]["robust"][eps] for n in zero_shot]))
                             for eps in done[zero_shot[0]]["robust"] if all(eps in e for e in eps_lists)}
    pending = [name for name in datasets if name not in done]
    return {"datasets": {name: _public(result) for name, result in done.items()}, "average_zero_shot": average,
            "pending": pending}


def _public(result: dict) -> dict:
    keep = ("clean", "robust", "samples", "attacks", "classes", "head", "alignment", "robust_by_attack", "warnings",
            "weights_sha256", "data_fingerprint")
    return {k: result[k] for k in keep if k in result}


def benchmark_json(results: dict[str, dict[str, dict]], datasets: Sequence[str], *, baseline: str, status: str,
                   settings: dict, specs: dict[str, str], provenance: Optional[dict] = None) -> dict:
    """One model: its summary at the top level; several: {"models": {LABEL: summary}, "baseline": LABEL}; with
    the run's `provenance` (code, software, device; each dataset result carries its weights' SHA-256)."""
    summaries = {label: dict(model_summary(per_model, datasets), model=specs[label]) for label, per_model in results.items()}
    head = {"status": status, "settings": settings, **({"provenance": provenance} if provenance is not None else {})}
    if len(summaries) == 1:
        return {**next(iter(summaries.values())), **head}
    return {"models": summaries, "baseline": baseline, **head}


def _cell(value: Optional[float], reference: Optional[float]) -> str:
    if value is None:
        return "—"
    text = f"{100 * value:.1f}"
    if reference is not None:
        diff = 100 * (value - reference)
        text += f" ({'↑' if diff >= 0 else '↓'}{abs(diff):.1f})"
    return text


def markdown_table(summaries: dict[str, dict], datasets: Sequence[str], baseline: str, settings: dict) -> str:
    """Table 3's layout: one row per (evaluation, model), datasets as columns, then "Average zero-shot".

    Accuracies in percent; every model but the baseline carries its difference to the baseline (↑/↓ points).
    """
    eps_list = settings["eps"]
    of = sum(1 for d in datasets if d in ZERO_SHOT_DATASETS)
    any_summary = next(iter(summaries.values()))
    covered = len(any_summary["average_zero_shot"]["datasets"])
    heads = {_head_family(r.get("head")) for summary in summaries.values() for r in summary["datasets"].values()}
    kind = {frozenset({"zero-shot"}): "zero-shot", frozenset({"linear probe"}): "linear probe"}.get(
        frozenset(heads), "zero-shot / linear probe")
    average_title = f"Average {kind}" + ("" if covered == of else f" ({covered} of {of})")
    header = ["Eval.", "Vision encoder"] + [DISPLAY_NAMES[d] for d in datasets] + ([average_title] if of else [])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for evaluation in ["clean"] + list(eps_list):
        for label, summary in summaries.items():
            reference = summaries[baseline] if label != baseline and len(summaries) > 1 else None
            cells = [evaluation if evaluation == "clean" else f"eps {evaluation}", label]
            for name in datasets:
                cells.append(_cell(_value(summary["datasets"].get(name), evaluation),
                                   _value(reference["datasets"].get(name), evaluation) if reference else None))
            if of:
                cells.append(_cell(_average(summary, evaluation), _average(reference, evaluation) if reference else None))
            lines.append("| " + " | ".join(cells) + " |")
    samples = sorted({r["samples"] for s in summaries.values() for r in s["datasets"].values()})
    attacks = sorted({a for s in summaries.values() for r in s["datasets"].values() for a in r.get("attacks", [])})
    notes = [f"Accuracy (%) on a fixed subset of up to {settings['samples']} test images per dataset "
             f"(images used: {', '.join(map(str, samples)) or '—'}; seed {settings['seed']}); robust: "
             f"{' / '.join(attacks) or 'no attack'} cascade, {settings['n_iter']} iterations, l_inf."]
    if len(summaries) > 1:
        notes.append(f"(↑/↓ x): difference to {baseline} in percentage points.")
    probed = [label for label, summary in summaries.items()
              if any(_head_family(r.get("head")) == "linear probe" for r in summary["datasets"].values())]
    if probed:
        notes.append(f"{', '.join(probed)}: no text tower, so a linear probe on each dataset's clean training "
                     "features replaces the zero-shot head (not comparable with zero-shot accuracy).")
    requested = "+".join(settings["attacks"])
    shorter = sorted({DISPLAY_NAMES[name] for s in summaries.values() for name, r in s["datasets"].items()
                      if r.get("attacks") and r["attacks"] != [requested]})
    if shorter:
        notes.append(f"{', '.join(shorter)}: fewer than 4 classes, so APGD-CE only (APGD-DLR-T needs 4 classes).")
    pending = sorted({p for s in summaries.values() for p in s["pending"]})
    if pending:
        notes.append(f"Not evaluated yet: {', '.join(pending)} (—).")
    return "\n".join(lines) + "\n\n" + "\n".join(notes) + "\n"


def _head_family(head: Optional[str]) -> str:
    """'zero-shot' or 'linear probe' (a fitted or a loaded linear head), from a result's "head" text."""
    return "linear probe" if head and head.startswith("linear") else "zero-shot"


def _value(result: Optional[dict], evaluation: str) -> Optional[float]:
    if result is None:
        return None
    return result["clean"] if evaluation == "clean" else result["robust"].get(evaluation)


def _average(summary: dict, evaluation: str) -> Optional[float]:
    average = summary["average_zero_shot"]
    if evaluation == "clean":
        return average.get("clean")
    return average.get("robust", {}).get(evaluation)


def plot_benchmark(summaries: dict[str, dict], datasets: Sequence[str], settings: dict, path: Path) -> Path:
    """One panel per evaluation (clean, each eps): grouped bars per dataset (and the zero-shot average), one colour per model."""
    evaluations = ["clean"] + list(settings["eps"])
    columns = list(datasets) + (["average"] if any(d in ZERO_SHOT_DATASETS for d in datasets) else [])
    fig, axes = new_figure(len(evaluations), 1, figsize=(max(6.0, 0.75 * len(columns) * max(1, len(summaries)) + 2),
                                                          2.6 * len(evaluations)), squeeze=False)
    width = 0.8 / max(1, len(summaries))
    positions = np.arange(len(columns))
    for ax, evaluation in zip(axes[:, 0], evaluations):
        for i, (label, summary) in enumerate(summaries.items()):
            values = [(_average(summary, evaluation) if c == "average" else _value(summary["datasets"].get(c), evaluation))
                      for c in columns]
            heights = [np.nan if v is None else 100 * v for v in values]
            ax.bar(positions + (i - (len(summaries) - 1) / 2) * width, heights, width, label=label)
        ax.set_xticks(positions, [DISPLAY_NAMES.get(c, "Avg. zero-shot") for c in columns], rotation=30, ha="right")
        ax.set(ylabel="accuracy (%)", ylim=(0, 100), title="clean" if evaluation == "clean" else f"robust, eps {evaluation}")
        ax.grid(axis="y", alpha=0.3)
    legend(axes[0, 0])
    return save_figure(fig, path)


def write_benchmark_report(results: dict[str, dict[str, dict]], datasets: Sequence[str], output: Path, *, baseline: str,
                           status: str, settings: dict, specs: dict[str, str], provenance: Optional[dict] = None) -> dict:
    """Writes OUTPUT/report.json, report.md and benchmark.png (atomically); returns the report."""
    output.mkdir(parents=True, exist_ok=True)
    report = benchmark_json(results, datasets, baseline=baseline, status=status, settings=settings, specs=specs,
                            provenance=provenance)
    summaries = report["models"] if "models" in report else {next(iter(results)): report}
    table = markdown_table(summaries, datasets, baseline, settings)
    if status != "complete":
        table = f"**Incomplete** ({status}): the benchmark has not finished.\n\n" + table
    write_json(output / "report.json", report)
    write_text_atomic(output / "report.md", table)
    plot_benchmark(summaries, datasets, settings, output / "benchmark.png")
    return report
