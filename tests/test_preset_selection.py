"""tools/preset_selection.py: the validation score and the rule that keeps the current value within seed noise."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))

import preset_selection  # noqa: E402


def _job(folder: Path, per_seed: list[tuple[float, float]], split: str = "validation") -> Path:
    """A results.json of LORE at 16/255 and 48/255, one (clean, robust) pair per seed, the same at both radii."""
    folder.mkdir(parents=True)
    runs = [{"method": "lore", "train_eps": eps, "seed": seed, "clean_accuracy": clean,
             "robust_accuracy": {"8/255": 0.9, "16/255": robust, "32/255": robust}, "within_margin": 0.5}
            for seed, (clean, robust) in enumerate(per_seed) for eps in ("16/255", "48/255")]
    mean = lambda values: [sum(values) / len(values), 0.0]  # noqa: E731
    series = [{"method": "lore", "train_eps": eps, "clean_accuracy": mean([c for c, _ in per_seed]),
               "robust_accuracy": {e: mean([r for _, r in per_seed]) for e in ("8/255", "16/255", "32/255")},
               "within_margin": [0.5, 0.0]} for eps in ("16/255", "48/255")]
    (folder / "results.json").write_text(json.dumps({"provenance": {"data": {"split": split}}, "runs": runs,
                                                     "series": series}))
    return folder


def test_the_score_reads_robust_at_the_training_radius_or_the_largest_below_it(tmp_path):
    results = json.loads((_job(tmp_path / "a", [(0.9, 0.5)]) / "results.json").read_text())
    results["runs"][1]["robust_accuracy"]["32/255"] = 0.1  # 48/255 is scored at 32/255, not at 8/255
    assert preset_selection.seed_scores(results, "lore") == {0: pytest.approx(((0.9 + 0.5) / 2 + (0.9 + 0.1) / 2) / 2)}


def test_a_lead_within_seed_noise_keeps_the_current_value(tmp_path, capsys):
    current = _job(tmp_path / "current", [(0.90, 0.50), (0.90, 0.52), (0.90, 0.48)])
    noisy = _job(tmp_path / "noisy", [(0.90, 0.60), (0.90, 0.45), (0.90, 0.48)])  # +0.005 mean, std 0.04
    clear = _job(tmp_path / "clear", [(0.95, 0.60), (0.95, 0.61), (0.95, 0.59)])
    preset_selection.main([f"current={current}", f"noisy={noisy}", "--current", "current"])
    assert "chosen: current (the best, noisy, leads by 0.0050, within the larger seed std 0.0397" in capsys.readouterr().out
    preset_selection.main([f"current={current}", f"noisy={noisy}", f"clear={clear}", "--current", "current"])
    assert "chosen: clear (leads current by 0.0750)" in capsys.readouterr().out


def test_runs_not_measured_on_validation_are_refused(tmp_path):
    test_run = _job(tmp_path / "t", [(0.9, 0.5)], split="test")
    with pytest.raises(SystemExit, match="not evaluated on the validation split"):
        preset_selection.main([f"t={test_run}", "--current", "t"])
