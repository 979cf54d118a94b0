"""tools/steps_gap.py: LORE's gap to FARE is paired seed by seed and labelled by preset and FARE's update count."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))

import steps_gap  # noqa: E402


def _job(folder: Path, steps: int, runs: list[tuple[str, int, float, float]], **setting) -> Path:
    """A finished main-job results.json: (method, seed, clean, robust at 16/255) per run, at 16/255."""
    folder.mkdir(parents=True)
    entries = [{"method": m, "train_eps": "16/255", "seed": s, "clean_accuracy": c, "robust_accuracy": {"16/255": r}}
               for m, s, c, r in runs]
    (folder / "results.json").write_text(json.dumps({"status": "finished", "setting": {"steps": steps, **setting},
                                                     "runs": entries}))
    return folder


def test_gaps_pair_seeds_and_name_each_setting(tmp_path, capsys):
    a = _job(tmp_path / "A", 90, [("fare", 0, 0.90, 0.20), ("fare", 1, 0.92, 0.30), ("lore", 0, 0.95, 0.25),
                                  ("lore", 1, 0.96, 0.34)], dual_preset="embedded", baseline_updates="authors")
    b = _job(tmp_path / "B", 90, [("fare", 0, 0.93, 0.27), ("fare", 1, 0.94, 0.36)], baseline_updates="equal")
    found = steps_gap.collect([a, b], "16/255")
    assert set(found) == {("16/255", 90, "fare (1 update)"), ("16/255", 90, "lore (embedded)"),
                          ("16/255", 90, "fare (K updates)")}
    gap = steps_gap.gaps(found)
    authors = gap[("16/255", 90, ("lore (embedded)", "fare (1 update)"))]
    assert authors["robust"] == pytest.approx((4.5, 0.7071067811865476))  # seed by seed: +5 and +4 points
    equal = gap[("16/255", 90, ("lore (embedded)", "fare (K updates)"))]
    assert equal["robust"][0] == pytest.approx(-2.0) and equal["seeds"] == 2
    assert ("16/255", 90, ("lore (paper)", "fare (1 update)")) not in gap  # no paper-preset run given
    assert steps_gap.main(["--runs", str(a), str(b), "--out", str(tmp_path / "gap.png")]) == 0
    printed = capsys.readouterr().out
    assert "+4.5 ± 0.7" in printed and "-2.0 ± 0.0" in printed and (tmp_path / "gap.png").stat().st_size > 0
    (a / "results.json").write_text(json.dumps({"status": "interrupted"}))
    with pytest.raises(ValueError, match="not a finished job"):
        steps_gap.collect([a], "16/255")


def test_jobs_of_different_splits_are_refused(tmp_path):
    a = _job(tmp_path / "A", 90, [("fare", 0, 0.90, 0.20)], baseline_updates="authors")
    b = _job(tmp_path / "B", 90, [("lore", 0, 0.95, 0.25)], dual_preset="embedded")
    for folder, split in ((a, "test"), (b, "validation")):
        results = json.loads((folder / "results.json").read_text())
        results["provenance"] = {"data": {"split": split}}
        (folder / "results.json").write_text(json.dumps(results))
    with pytest.raises(ValueError, match="different splits"):
        steps_gap.collect([a, b], "16/255")
