"""examples/lightning_fairness.py: runs offline, and under Lightning's DDP (2 CPU processes, gloo) the ranks agree."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("lightning.pytorch")
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = str(ROOT / "examples" / "lightning_fairness.py")
SMALL = ["--rows", "4000"]  # 8 batches of 500 per epoch


def run_example(tmp_path: Path, *args: str) -> dict:
    tmp_path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([sys.executable, EXAMPLE, "--out", str(tmp_path), *args],
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


@pytest.mark.slow
def test_a_resumed_example_ends_where_the_uninterrupted_one_does(tmp_path):
    whole = run_example(tmp_path / "whole", *SMALL, "--epochs", "4")["constrained"]
    run_example(tmp_path / "half", *SMALL, "--epochs", "2")
    checkpoint = tmp_path / "half" / "constrained" / "checkpoints" / "epoch=1-step=16.ckpt"
    resumed = run_example(tmp_path / "resumed", *SMALL, "--epochs", "4", "--resume", str(checkpoint))["constrained"]
    assert resumed["primal_steps"] == whole["primal_steps"] == 32
    assert resumed["multipliers"] == pytest.approx(whole["multipliers"], abs=1e-6)
    assert max(whole["multipliers"]) > 0.1  # the comparison is of multipliers that moved
    assert resumed["accuracy"] == pytest.approx(whole["accuracy"], abs=1e-6)


@pytest.mark.slow
def test_sigterm_to_the_process_group_writes_a_checkpoint_and_exits_non_zero(tmp_path):
    process = subprocess.Popen([sys.executable, EXAMPLE, "--out", str(tmp_path), *SMALL, "--epochs", "1000"], cwd=tmp_path,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                               env={**os.environ, "OMP_NUM_THREADS": "1"})
    started = time.monotonic()
    while not list(tmp_path.glob("unconstrained/checkpoints/*.ckpt")):  # training is under way
        assert process.poll() is None and time.monotonic() - started < 300, process.communicate()[1][-3000:]
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGTERM)
    _, error = process.communicate(timeout=300)
    assert process.returncode == 143, error[-3000:]
    saved = tmp_path / "unconstrained" / "interrupted.ckpt"
    assert "stopped by SIGTERM in the unconstrained fit at step" in error and str(saved) in error
    checkpoint = torch.load(saved, weights_only=True)
    assert checkpoint["global_step"] >= 8 and "primal_dual" in checkpoint
