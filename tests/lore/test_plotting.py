"""Figures say what they show: one colour per method everywhere, only the attacks that ran, the setting."""

from __future__ import annotations

import matplotlib.colors
import pytest

from lore import plotting
from lore.evaluation import report as report_module


def test_each_method_has_one_colour_whatever_the_label():
    assert plotting.method_color("lore") == plotting.method_color("LORE") == plotting.method_color("lore rho=0.1")
    assert plotting.method_color("tecoa-l2") != plotting.method_color("tecoa")
    assert plotting.method_color("lorem") is None  # not a method: matplotlib's cycle
    colours = [plotting.METHOD_COLORS[m] for m in plotting.METHOD_COLORS]
    assert len(set(colours)) == len(colours)


def test_the_robustness_plot_names_only_the_attacks_that_ran_and_colours_by_method(tmp_path, monkeypatch):
    drawn = []
    monkeypatch.setattr(report_module, "save_figure", lambda fig, path: drawn.append(fig) or path)
    reports = {"fare": {"clean_accuracy": 0.9, "robust_accuracy": {"4/255": {"apgd-ce": 0.5}}},
               "lore": {"clean_accuracy": 0.95, "robust_accuracy": {"4/255": {"apgd-ce": 0.6}}}}
    report_module.plot_robustness(reports, tmp_path / "r.png", setting="trained at 48/255")
    ax = drawn[0].axes[0]
    assert "apgd-ce" in ax.get_title() and "DLR" not in ax.get_title() and "48/255" in ax.get_title()
    colours = {line.get_label(): matplotlib.colors.to_hex(line.get_color()) for line in ax.get_lines()}
    assert colours == {m: matplotlib.colors.to_hex(plotting.method_color(m)) for m in ("fare", "lore")}


@pytest.mark.parametrize("method", ["naive", "lore"])
def test_training_curves_label_every_axis_use_whole_batches_and_show_no_fixed_weight_as_lambda(tmp_path, monkeypatch,
                                                                                                method):
    import json

    from lore.training import plots

    records = [{"step": s, "robust_loss": 1.0 / s, "clean/multiplier_mean": 1.0, "probe/lambda_mean": 1.0,
                "probe/clean_accuracy": 0.9, "probe/robust_accuracy": 0.5, "probe/relative_distance_q10": 0.01,
                "probe/relative_distance_q50": 0.02, "probe/relative_distance_q90": 0.05} for s in (1, 2)]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (tmp_path / "config.json").write_text(json.dumps({"method": method, "rho": 0.1, "naive_weight": 1.0}))
    figures = []
    monkeypatch.setattr(plots, "save_figure", lambda fig, path: figures.append(fig) or path)
    plots.plot_run(tmp_path)
    (figure,) = figures
    for ax in figure.axes:
        assert ax.get_xlabel() == "batch" and ax.get_ylabel(), ax.get_title()
        assert all(float(t).is_integer() for t in ax.get_xticks()), (ax.get_title(), ax.get_xticks())
    lam = next(ax for ax in figure.axes if ax.get_title() == "mean lambda(x)")
    if method == "naive":  # a fixed weight is not drawn as if it were a learned multiplier
        assert not lam.lines and any("fixed weight" in t.get_text() for t in lam.texts)
    else:
        assert len(lam.lines) == 2


def test_legends_count_in_the_singular_for_one():
    """Legends read "lore (1 seeds)"."""
    from lore.plotting import count_label

    assert count_label(1, "seed") == "1 seed" and count_label(3, "seed") == "3 seeds" and count_label(0, "seed") == "0 seeds"
