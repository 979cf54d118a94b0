"""Writes an evaluation report as JSON, a markdown table, and a robust-accuracy-vs-eps PNG."""

from __future__ import annotations

from pathlib import Path
from typing import Union

from ..jsonio import write_json, write_text_atomic
from ..plotting import finish_axes, method_style, new_figure, save_figure
from ..units import parse_eps


def markdown_table(report: dict) -> str:
    """One row per eps: each attack's accuracy, the worst case, and Square when present."""
    lines = [f"clean accuracy: {report['clean_accuracy']:.4f} ({report['n_samples']} images)", ""]
    if "head" in report:
        lines[1:1] = [f"head: {report['head']}"]
    for skipped in report.get("skipped", []):
        lines[-1:-1] = [f"skipped: {skipped['attack']} ({skipped['reason']})"]
    robust = report.get("robust_accuracy", {})
    if robust:
        columns = list(next(iter(robust.values())).keys())
        extra = ["square"] if "square" in report else []
        lines.append("| eps | " + " | ".join(columns + extra) + " |")
        lines.append("|---" * (1 + len(columns) + len(extra)) + "|")
        for eps, row in robust.items():
            cells = [f"{row[c]:.4f}" for c in columns] + ([f"{report['square'][eps]:.4f}"] if extra else [])
            lines.append(f"| {eps} | " + " | ".join(cells) + " |")
    for key, title in (("gaussian_noise", "Gaussian noise (sigma)"),):
        if key in report:
            lines += ["", f"{title}: " + ", ".join(f"{k}: {v:.4f}" for k, v in report[key].items())]
    if "corruptions" in report:
        lines += ["", "| corruption | " + " | ".join(f"severity {s}" for s in range(1, 6)) + " |", "|---" * 6 + "|"]
        for name, row in report["corruptions"].items():
            lines.append(f"| {name} | " + " | ".join(f"{v:.4f}" for v in row.values()) + " |")
    if "alignment" in report:
        lines += ["", f"image-text alignment (mean cosine to the class text embedding): {report['alignment']:.4f}"]
    for warning in report.get("warnings", []):
        lines += ["", f"WARNING: {warning}"]
    return "\n".join(lines) + "\n"


def plot_robustness(reports: dict[str, dict], path: Union[str, Path], *, setting: str = "") -> Path:
    """Robust accuracy (worst case over the attacks that ran) against eps, one line per model, each method in its
    own colour, marker and line style (`lore.plotting.method_style`); `setting` (e.g. "trained at 48/255") goes into the title."""
    fig, ax = new_figure(figsize=(6, 4))
    attacks = sorted({list(row)[-1] for report in reports.values() for row in report.get("robust_accuracy", {}).values()
                      if row})
    for name, report in reports.items():
        robust = report.get("robust_accuracy", {})
        if not robust:
            continue
        labels = ["0"] + list(robust)
        positions = [parse_eps(label) * 255 for label in labels]  # eps on a true scale, in /255 units
        values = [report["clean_accuracy"]] + [list(row.values())[-1] for row in robust.values()]
        ax.plot(positions, values, label=name, **method_style(name))
        ax.set_xticks(positions, labels)
    title = f"robust accuracy vs eps ({' / '.join(attacks) or 'no attack ran'})" + (f", {setting}" if setting else "")
    ax.set(xlabel="eps (l_inf, x/255)", ylabel="robust accuracy", ylim=(0, 1), title=title)
    finish_axes(ax)
    return save_figure(fig, path)


def write_report(report: dict, folder: Union[str, Path], name: str = "model") -> list[Path]:
    """Writes report.json, report.md and robust_accuracy.png into `folder`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / "report.json", report)
    write_text_atomic(folder / "report.md", markdown_table(report))
    return [folder / "report.json", folder / "report.md", plot_robustness({name: report}, folder / "robust_accuracy.png")]
