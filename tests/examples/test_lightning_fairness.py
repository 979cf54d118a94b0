"""examples/lightning_fairness.py: runs offline, and under Lightning's DDP (2 CPU processes, gloo) the ranks agree."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("lightning.pytorch")

ROOT = Path(__file__).resolve().parents[2]


def run_example(tmp_path: Path, *args: str) -> dict:
    done = subprocess.run([sys.executable, str(ROOT / "examples" / "lightning_fairness.py"), "--out", str(tmp_path), *args],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((tmp_path / "results.json").read_text())


@pytest.mark.slow
def test_ddp_with_two_processes_keeps_the_multipliers_identical(tmp_path):
    result = run_example(tmp_path, "--devices", "2", "--epochs", "2", "--rows", "4000", "--batch-size", "250")
    constrained = result["constrained"]
    assert result["devices"] == 2
    assert constrained["rank_disagreement"] == 0.0
    assert constrained["primal_steps"] == 2 * (4000 // 2 // 250)  # each rank saw its half of the rows
    assert any(v > 0 for v in constrained["multipliers"])
    assert (tmp_path / "constrained" / "checkpoints").is_dir()  # Lightning's checkpoints, with the dual state


@pytest.mark.slow
def test_the_constrained_network_meets_the_bound_on_held_out_rows(tmp_path):
    result = run_example(tmp_path)
    assert result["unconstrained"]["parity"] > 5 * result["bound"]  # the problem is not trivially fair
    assert result["constrained"]["parity"] <= result["bound"] + 0.01
    assert result["constrained"]["train"]["parity"] <= result["bound"] + 0.005
