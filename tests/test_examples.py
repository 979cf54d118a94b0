"""The examples run end to end (small modes) and write what they promise."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_lore_clip_quick_writes_results(tmp_path):
    subprocess.run([sys.executable, str(ROOT / "examples" / "lore_clip.py"), "--quick", "--out", str(tmp_path)],
                   check=True, cwd=tmp_path, capture_output=True, timeout=600)
    results = json.loads((tmp_path / "results.json").read_text())["methods"]
    assert set(results) == {"reference", "fare", "naive", "lore"}
    for entry in results.values():
        assert 0.0 <= entry["clean_accuracy"] <= 1.0
        assert 0.0 <= entry["constraint_satisfaction"] <= 1.0
        assert set(entry["robust_accuracy"]) == {"8/255", "16/255", "32/255"}
        assert all(0.0 <= v <= 1.0 for v in entry["robust_accuracy"].values())
    assert results["reference"]["constraint_satisfaction"] == 1.0


@pytest.mark.slow
def test_constrained_loop_example_runs():
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "constrained_loop.py"), "--steps", "60"],
                         check=True, capture_output=True, text=True, timeout=300)
    assert "constrained" in out.stdout and "unconstrained" in out.stdout
