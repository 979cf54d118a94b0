"""The main job's `--sweep relax`: the choice (one price, a margin per radius) is made on validation and only
reported on test."""

from __future__ import annotations

import json

import pytest


def _row(setting, eps, rho, price, clean, robust):
    return {"setting": setting, "train_eps": eps, "rho": rho, "price": price, "clean_accuracy": (clean, 0.0),
            "robust_accuracy": (robust, 0.0), "score": ((clean + robust) / 2, 0.0)}


def test_one_price_for_every_radius_and_the_best_margin_per_radius():
    from lore_clip_support.relax import choose, gaps

    rows = [_row("fare", "16/255", None, None, 0.9, 0.5),
            _row("rho 0.1", "16/255", 0.1, None, 0.95, 0.55), _row("rho 0.3", "16/255", 0.3, None, 0.94, 0.50),
            _row("rho 0.1", "32/255", 0.1, None, 0.90, 0.10), _row("rho 0.3", "32/255", 0.3, None, 0.93, 0.12),
            _row("relax 3", "16/255", 0.1, 3.0, 0.96, 0.50), _row("relax 3", "32/255", 0.1, 3.0, 0.95, 0.13),
            _row("relax 30", "16/255", 0.1, 30.0, 0.95, 0.56), _row("relax 30", "32/255", 0.1, 30.0, 0.80, 0.05)]
    choice = choose(rows)
    assert choice["best_rho"] == {"16/255": 0.1, "32/255": 0.3}  # the margin differs per radius
    assert choice["price"] == 3.0  # (0.73 + 0.54) / 2 beats (0.755 + 0.425) / 2
    found = {g["train_eps"]: g for g in gaps(rows, choice)}
    assert found["16/255"]["robust_points"] == pytest.approx(-5.0) and not found["16/255"]["within_goal"]
    assert found["32/255"]["clean_points"] == pytest.approx(2.0) and found["32/255"]["within_goal"]


def test_a_choice_made_on_the_test_split_is_refused(tmp_path):
    from lore_clip_support.relax import read_selection

    (tmp_path / "relax.json").write_text(json.dumps({"eval_split": "test", "choice": {}}))
    with pytest.raises(ValueError, match="made on the test split; choose on validation"):
        read_selection(tmp_path)


def test_the_relax_sweep_runs_alone(capsys):
    from lore_clip import parse_args

    with pytest.raises(SystemExit):
        parse_args(["--sweep", "relax,rho"])
    assert "--sweep relax runs alone" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse_args(["--selected-on", "x"])
    assert "--selected-on belongs to --sweep relax" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse_args(["--sweep", "relax", "--relax-prices", "3,-1"])
    assert "--relax-prices takes a comma list of numbers > 0, got '3,-1'" in capsys.readouterr().err


@pytest.mark.slow
def test_choose_on_validation_then_report_on_test(tmp_path, lore_cache):
    from lore_clip import main

    common = ["--sweep", "relax", "--train-eps", "16/255,32/255", "--steps", "2", "--eval-samples", "16",
              "--apgd-iter", "2", "--probe-every", "1", "--cache-dir", str(lore_cache)]
    grid = ["--relax-rhos", "0.1,0.3", "--relax-prices", "3,30"]
    assert main([*common, *grid, "--eval-split", "validation", "--out", str(tmp_path / "val")]) == 0
    chosen = json.loads((tmp_path / "val" / "relax.json").read_text())
    assert chosen["eval_split"] == "validation" and len(chosen["rows"]) == 2 * (1 + 2 + 2)
    assert main([*common, "--selected-on", str(tmp_path / "val"), "--out", str(tmp_path / "test")]) == 0
    report = json.loads((tmp_path / "test" / "relax.json").read_text())
    assert report["eval_split"] == "test" and report["choice"] == chosen["choice"]
    assert {r["setting"] for r in report["rows"]} == {"fare", f"relax {chosen['choice']['price']:g}",
                                                       *{f"rho {r:g}" for r in chosen["choice"]["best_rho"].values()}}
    assert (tmp_path / "test" / "relax.png").stat().st_size > 0 and len(report["gaps"]) == 2
