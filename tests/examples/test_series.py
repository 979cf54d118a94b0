"""The eps series: aggregation over seeds, the paper-style table with differences to FARE, plots."""

from __future__ import annotations

import json
import statistics

import hypothesis.strategies as st
import pytest
from hypothesis import given, settings

from lore_clip_support.series import aggregate, plot_constraint, plot_series, series_table


def run(method, eps, seed, clean, robust, within=0.5):
    return {"method": method, "train_eps": eps, "seed": seed, "clean_accuracy": clean,
            "robust_accuracy": {"8/255": robust, "16/255": robust / 2}, "within_margin": within}


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(0, 1), min_size=1, max_size=5), st.lists(st.floats(0, 1), min_size=1, max_size=5))
def test_aggregate_gives_the_mean_and_sample_std_over_seeds(fare_clean, lore_clean):
    runs = [run("fare", "4/255", s, c, c / 2) for s, c in enumerate(fare_clean)]
    runs += [run("lore", "4/255", s, c, c / 3) for s, c in enumerate(lore_clean)]
    rows = {r["method"]: r for r in aggregate(runs)}
    for method, values in (("fare", fare_clean), ("lore", lore_clean)):
        mean, std = rows[method]["clean_accuracy"]
        assert mean == pytest.approx(statistics.fmean(values))
        if len(values) > 1:
            assert std == pytest.approx(statistics.stdev(values))
        else:
            assert std is None  # one seed: no spread was measured, so none is claimed
        assert rows[method]["seeds"] == list(range(len(values)))


def test_aggregate_keeps_radii_apart_and_in_first_seen_order():
    runs = [run(m, e, s, 0.9, 0.5) for s in (0, 1) for e in ("16/255", "64/255") for m in ("fare", "lore")]
    rows = aggregate(runs)
    assert [(r["method"], r["train_eps"]) for r in rows] == [("fare", "16/255"), ("lore", "16/255"),
                                                             ("fare", "64/255"), ("lore", "64/255")]
    assert all(r["seeds"] == [0, 1] for r in rows)


def test_table_marks_the_difference_to_fare_in_points_up_and_down():
    runs = [run("fare", "4/255", 0, 0.80, 0.40), run("lore", "4/255", 0, 0.85, 0.30)]
    reference = {"clean_accuracy": 0.95, "robust_accuracy": {"8/255": 0.1, "16/255": 0.0}, "within_margin": 1.0}
    text = series_table(aggregate(runs), reference)
    lore_line = next(line for line in text.splitlines() if " lore " in f" {line} ")
    assert "0.850 (↑5.0)" in lore_line and "0.300 (↓10.0)" in lore_line and "±" not in text  # one seed
    fare_line = next(line for line in text.splitlines() if " fare " in f" {line} ")
    assert "↑" not in fare_line and "↓" not in fare_line
    assert text.splitlines()[1].split()[1] == "reference"
    markdown = series_table(aggregate(runs), reference, markdown=True)
    assert markdown.splitlines()[0].startswith("| train eps | method | clean")
    assert all(line.count("|") == markdown.splitlines()[0].count("|") for line in markdown.splitlines())


def test_plots_are_written(tmp_path):
    runs = [run(m, e, s, 0.9 - 0.1 * i, 0.5) for s in (0, 1) for i, e in enumerate(("16/255", "64/255"))
            for m in ("fare", "lore")]
    assert plot_series(aggregate(runs), None, tmp_path / "series.png").stat().st_size > 10_000
    folders = {}
    for name, with_lambda in (("fare", False), ("lore", True)):
        folder = tmp_path / name
        folder.mkdir()
        records = []
        for step in range(0, 30, 10):
            record = {"step": step, "probe/relative_distance_q10": 0.01, "probe/relative_distance_q50": 0.05 + step / 100,
                      "probe/relative_distance_q90": 0.2, "probe/within_margin": 0.9}
            if with_lambda:
                record.update({"probe/lambda_mean": 1.0, "probe/lambda_q10": 0.5, "probe/lambda_q90": 2.0})
            records.append(record)
        (folder / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in records))
        folders[name] = folder
    assert plot_constraint(folders, 0.1, tmp_path / "constraint.png", train_eps="32/255").stat().st_size > 10_000


def test_the_constraint_figure_names_its_training_radius_and_colours_by_method(tmp_path, monkeypatch):
    from lore_clip_support import series

    from lore.plotting import method_color

    drawn = []
    monkeypatch.setattr(series, "save_figure", lambda fig, path: drawn.append(fig) or path)
    folder = tmp_path / "lore"
    folder.mkdir()
    (folder / "metrics.jsonl").write_text(json.dumps({"step": 10, "probe/relative_distance_q10": 0.01,
                                                      "probe/relative_distance_q50": 0.05,
                                                      "probe/relative_distance_q90": 0.2, "probe/within_margin": 0.9}))
    series.plot_constraint({"lore": folder}, 0.1, tmp_path / "c.png", train_eps="48/255")
    assert "48/255" in drawn[0].texts[0].get_text()  # the suptitle
    assert drawn[0].axes[1].get_lines()[0].get_color() == method_color("lore")


def _signature(line):
    return line.get_marker(), line.get_linestyle(), line.get_color()


def test_methods_with_equal_values_both_stay_visible(tmp_path, monkeypatch):
    """naive and FARE both at 0 within the margin (constraint.png), LORE and naive at the same accuracy
    (series.png): each method keeps its own marker and line style, and the series' points sit side by side."""
    from lore_clip_support import series

    drawn = []
    monkeypatch.setattr(series, "save_figure", lambda fig, path: drawn.append(fig) or path)
    rows = aggregate([run(m, e, 0, 0.9, 0.4) for e in ("16/255", "32/255") for m in ("fare", "naive", "lore")])
    series.plot_series(rows, None, tmp_path / "s.png")
    lines = [bars.lines[0] for bars in drawn[0].axes[1].containers if bars.get_label() in ("fare", "naive", "lore")]
    assert len(lines) == 3 and len({_signature(line) for line in lines}) == 3
    xs = [tuple(line.get_xdata()) for line in lines]
    assert len(set(xs)) == 3  # dodged: three distinct x positions at each radius
    assert all(abs(a - b) < 1.0 for a, b in zip(xs[0], xs[2]))  # by less than a point of eps /255: ticks still read

    folders = {}
    for name in ("fare", "naive"):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "metrics.jsonl").write_text(json.dumps({"step": 10, "probe/relative_distance_q10": 0.5,
                                                          "probe/relative_distance_q50": 0.6,
                                                          "probe/relative_distance_q90": 0.7, "probe/within_margin": 0.0}))
        folders[name] = folder
    series.plot_constraint(folders, 0.1, tmp_path / "c.png", train_eps="48/255")
    margin = [line for line in drawn[1].axes[1].get_lines() if line.get_label() in folders]
    assert len(margin) == 2 and _signature(margin[0]) != _signature(margin[1])
    assert all(line.get_markerfacecolor() == "none" for line in margin)  # hollow: a marker below shows through


def _results(path, runs, status="finished"):
    path.write_text(json.dumps({"status": status, "runs": runs}))
    return path


def _run(method, clean, robust, within=0.9, seed=0):
    return {"method": method, "train_eps": "48/255", "seed": seed, "clean_accuracy": clean,
            "robust_accuracy": {"8/255": robust}, "within_margin": within}


def test_compare_results_reports_each_difference_and_the_largest(tmp_path, capsys):
    from compare_results import main

    a = _results(tmp_path / "a.json", [_run("fare", 0.40, 0.20), _run("lore", 0.96, 0.86)])
    b = _results(tmp_path / "b.json", [_run("fare", 0.43, 0.20), _run("lore", 0.95, 0.87), _run("naive", 0.9, 0.8)])
    assert main([str(a), str(b), "--labels", "2 threads", "1 thread", "--plot", str(tmp_path / "v.png")]) == 0
    out = capsys.readouterr().out
    assert "+3.0" in out and "-1.0" in out  # fare clean 0.40 -> 0.43, lore clean 0.96 -> 0.95
    assert "clean: 3.0" in out and "robust 8/255: 1.0" in out and "in margin: 0.0" in out
    assert "naive" not in out  # only in one file: not compared
    assert (tmp_path / "v.png").stat().st_size > 10_000


def test_compare_results_refuses_an_interrupted_job(tmp_path, capsys):
    from compare_results import main

    a = _results(tmp_path / "a.json", [_run("fare", 0.4, 0.2)])
    b = _results(tmp_path / "b.json", [], status="interrupted")
    assert main([str(a), str(b)]) == 2
    assert "not describe a finished job" in capsys.readouterr().err


def _probed(train_eps, near_fraction, near, inside, seed=0):
    return {"method": "lore", "train_eps": train_eps, "seed": seed,
            "final_probe": {"step": 90, "within_margin": 0.98, "near_fraction": near_fraction, "lambda_mean": inside,
                            "lambda_near_mean": near, "lambda_inside_mean": inside,
                            "lambda_deviation_rank_correlation": 0.4}}


def test_the_multiplier_table_gives_near_over_inside_and_says_when_the_constraint_binds_nowhere():
    from lore_clip_support.series import multiplier_table

    fare = {"method": "fare", "train_eps": "16/255", "seed": 0, "final_probe": {"step": 90, "within_margin": 0.9}}
    text = multiplier_table([fare, _probed("16/255", 0.0, float("nan"), 0.49),
                             _probed("48/255", 0.05, 6.5, 2.6, seed=1), _probed("32/255", 0.0, None, 0.01)])
    lines = text.splitlines()
    assert len(lines) == 3  # FARE has no multiplier: no line
    assert "16/255 seed 0" in lines[0] and "binds nowhere" in lines[0] and "x" not in lines[0].split("lambda")[-1]
    assert "48/255 seed 1" in lines[1] and "= 2.5x" in lines[1] and "near 0.050" in lines[1]
    assert "binds nowhere" in lines[2]  # null in results.json (strict JSON has no NaN) reads the same
    assert multiplier_table([fare]) == ""
    everyone_near = _probed("48/255", 1.0, 3.0, None)
    assert "every image near its margin; lambda 3" in multiplier_table([everyone_near])
    assert "(lambda 0 on every image inside)" in multiplier_table([_probed("48/255", 0.1, 3.0, 0.0)])
