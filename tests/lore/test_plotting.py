"""Figures say what they show: one colour per method everywhere, only the attacks that ran, the setting."""

from __future__ import annotations

import matplotlib.colors

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
