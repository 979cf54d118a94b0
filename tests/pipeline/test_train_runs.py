"""`lore train` end to end (slow): outputs, kill-and-resume, torchrun DDP, divergence, open_clip folders, compile."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from lore.training.checkpoint import load_checkpoint
from lore.training.config import TrainConfig
from lore.models.export import load_exported
from lore.training.plots import read_metrics

FAST = ["--batch-size", "16", "--eps", "32/255", "--pgd-steps", "3", "--primal-steps", "2", "--lr", "1e-3",
        "--dual-lr", "1e-3", "--dual-hidden", "32", "--probe-size", "64", "--probe-every", "2"]


@pytest.fixture
def cache_dir(lore_cache):
    return lore_cache


ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1"}  # two xdist workers on two cores: no oversubscription


def run_cli(args, **kwargs):
    kwargs.setdefault("env", ONE_THREAD)
    return subprocess.run([sys.executable, "-m", "lore", *args], capture_output=True, text=True, timeout=600, **kwargs)


def encoder_state(run: Path) -> dict:
    return torch.load(run / "last.pt", weights_only=True)


def wait_for_metrics(run: Path, lines: int, timeout: float = 300) -> None:
    """Waits until the run being trained in `run` has logged `lines` metrics lines (or `timeout` seconds pass)."""
    metrics = run / "metrics.jsonl"
    deadline = time.time() + timeout
    while time.time() < deadline and (not metrics.exists() or len(metrics.read_text().splitlines()) < lines):
        time.sleep(0.05)


pytestmark = pytest.mark.slow


def _not_json(constant):
    raise AssertionError(f"{constant} is not JSON: a non-finite number must be written as null")


def test_cpu_run_writes_checkpoint_metrics_plots_and_export(tmp_path, cache_dir):
    run = tmp_path / "run"
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"method": "lore", "rho": 0.05}))
    done = run_cli(["train", "--config", str(config), "--output", str(run), "--cache-dir", str(cache_dir),
                    "--max-steps", "4", "--checkpoint-every", "2", "--tensorboard", *FAST])
    assert done.returncode == 0, done.stderr
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["step"] == 4
    assert summary["passes"] == "fused" and summary["workers"] == 0  # auto on a CPU; in-memory digits need no workers
    longest_step = max(json.loads(line)["step_seconds"] for line in (run / "metrics.jsonl").read_text().splitlines()[1:])
    assert summary["longest_batch_seconds"] == pytest.approx(longest_step, abs=1e-3)  # the grace a stop needs
    assert summary["longest_checkpoint_seconds"] > 0
    assert summary["stop_needs_seconds"] == pytest.approx(
        summary["longest_batch_seconds"] + summary["longest_checkpoint_seconds"], abs=2e-3)
    records = [json.loads(line, parse_constant=_not_json) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [0, 1, 2, 3, 4]
    # before training every digit sits at phi_0, none near its margin: that group's mean is null (strict JSON),
    # and reads back as NaN
    assert records[0]["probe/lambda_near_mean"] is None and records[0]["probe/lambda_inside_mean"] == 1.0
    assert math.isnan(read_metrics(run)[0]["probe/lambda_near_mean"])
    json.loads((run / "summary.json").read_text(), parse_constant=_not_json)
    for key in ("robust_loss", "clean_distance", "clean/satisfied_fraction", "clean/multiplier_mean", "lr", "images_per_second"):
        assert key in records[-1]
    last = records[-1]  # where a step's time went: the phases add up to no more than the step
    phases = [last[k] for k in ("data_wait_seconds", "attack_seconds", "primal_seconds", "dual_seconds")]
    assert all(t >= 0 for t in phases) and sum(phases) <= last["step_seconds"] * 1.001
    assert last["images_per_second"] == pytest.approx(16 / last["step_seconds"])
    assert {"probe/clean_accuracy", "probe/robust_accuracy", "probe/within_margin"} <= set(records[2])
    assert (run / "training_curves.png").stat().st_size > 10_000
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    assert json.loads((run / "config.json").read_text())["rho"] == 0.05
    # the export loads back in one line and equals the trained encoder
    exported = load_exported(run / "export")
    state = encoder_state(run)["encoder"]
    assert all(torch.equal(exported.state_dict()[k], v) for k, v in state.items())
    # starting again into the same folder is refused instead of overwriting it
    again = run_cli(["train", "--output", str(run), "--cache-dir", str(cache_dir), "--max-steps", "4", *FAST])
    assert again.returncode == 2 and "pass --resume" in again.stderr


def test_resume_refuses_a_checkpoint_of_another_run(tmp_path, cache_dir):
    run = tmp_path / "run"
    first = run_cli(["train", "--output", str(run), "--cache-dir", str(cache_dir), "--max-steps", "1", *FAST])
    assert first.returncode == 0, first.stderr
    other = run_cli(["train", "--output", str(run), "--cache-dir", str(cache_dir), "--max-steps", "2", "--resume",
                     *FAST, "--rho", "0.3"])
    assert other.returncode == 2 and "rho: checkpoint 0.1 vs now 0.3" in other.stderr
    (run / "last.pt").write_bytes(b"garbage")
    broken = run_cli(["train", "--output", str(run), "--cache-dir", str(cache_dir), "--max-steps", "2", "--resume", *FAST])
    assert broken.returncode == 2 and "corrupt or truncated" in broken.stderr


@pytest.mark.parametrize("data, target", [("digits", "process"), ("folder-with-workers", "process"),
                                          ("folder-with-workers", "process group")])
def test_killed_and_resumed_run_equals_an_uninterrupted_one_bit_for_bit(tmp_path, cache_dir, data, target, write_digits):
    """SIGTERM to the main process, or (as SLURM and torchrun do) to its whole process group, DataLoader
    workers included: the run checkpoints its last finished batch, exits 130, and resumes bit for bit."""
    common = ["--cache-dir", str(cache_dir), "--max-steps", "10", "--checkpoint-every", "1", *FAST]
    per_epoch = 1348 // 16  # the digits' training split at batch 16
    if data == "folder-with-workers":  # JPEG-free PNG folder decoded by 2 DataLoader processes; 7 batches per epoch
        write_digits(tmp_path / "images", range(112))
        common += ["--data", str(tmp_path / "images"), "--probe-data", str(tmp_path / "images"), "--workers", "2"]
        per_epoch = 112 // 16
    straight = tmp_path / "straight"
    assert run_cli(["train", "--output", str(straight), *common]).returncode == 0

    killed = tmp_path / "killed"
    process = subprocess.Popen([sys.executable, "-m", "lore", "train", "--output", str(killed), *common],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ONE_THREAD,
                               start_new_session=True)  # its own process group, with its DataLoader workers
    wait_for_metrics(killed, 4)
    if target == "process group":
        os.killpg(process.pid, signal.SIGTERM)
    else:
        process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 130, stderr
    interrupted_at = torch.load(killed / "last.pt", weights_only=True)["step"]
    assert 3 <= interrupted_at < 10 and interrupted_at % per_epoch != 0  # killed in the middle of an epoch
    resumed = run_cli(["train", "--output", str(killed), "--resume", *common])
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads((killed / "summary.json").read_text())["workers"] == (2 if data == "folder-with-workers" else 0)

    a, b = encoder_state(straight), encoder_state(killed)
    assert a["step"] == b["step"] == 10
    for key in a["encoder"]:
        assert torch.equal(a["encoder"][key], b["encoder"][key]), key
    dual_a = a["dual"]["primal_dual"]["multipliers"]
    dual_b = b["dual"]["primal_dual"]["multipliers"]
    assert all(torch.equal(dual_a[k], dual_b[k]) for k in dual_a)
    steps = [json.loads(line)["step"] for line in (killed / "metrics.jsonl").read_text().splitlines()]
    assert steps[-1] == 10


def test_torchrun_ddp_matches_a_single_process_with_the_same_global_batch(tmp_path, cache_dir):
    """2 gloo ranks with the memory-lean sequential step (DDP no_sync for the adversarial backward) against one
    fused process with the same global batch."""
    common = ["--cache-dir", str(cache_dir), "--max-steps", "3", "--probe-every", "0", "--batch-size", "8",
              "--eps", "32/255", "--pgd-steps", "3", "--primal-steps", "2", "--lr", "1e-3", "--dual-lr", "1e-2",
              "--dual-hidden", "32", "--device", "cpu"]
    ddp = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29533",
                           "-m", "lore", "train", "--output", str(ddp), "--passes", "sequential", *common],
                          capture_output=True, text=True,
                          timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((ddp / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["ranks_agree"] is True

    single = tmp_path / "single"
    args = [a if a != "8" else "16" for a in common]  # the same global batch in one process
    assert run_cli(["train", "--output", str(single), *args], env=env).returncode == 0
    a, b = encoder_state(ddp), encoder_state(single)
    for key in a["encoder"]:
        assert torch.allclose(a["encoder"][key], b["encoder"][key], rtol=1e-4, atol=1e-5), key
    net_a, net_b = a["dual"]["primal_dual"]["multipliers"], b["dual"]["primal_dual"]["multipliers"]
    for key in net_a:
        assert torch.allclose(net_a[key], net_b[key], rtol=1e-4, atol=1e-6), key


def test_sigterm_to_a_torchrun_process_group_checkpoints_and_resumes_bit_for_bit(tmp_path, cache_dir):
    """torchrun and SLURM signal the whole group (agent and ranks): every rank stops after its batch, rank 0 writes
    last.pt, the ranks exit 130, and a torchrun --resume ends exactly where an uninterrupted torchrun run ends."""
    common = ["--cache-dir", str(cache_dir), "--max-steps", "10", "--checkpoint-every", "1", "--probe-every", "0",
              *FAST]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def torchrun(out: Path, *extra: str, port: int) -> list[str]:
        return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={port}",
                "-m", "lore", "train", "--output", str(out), *common, *extra]

    straight = tmp_path / "straight"
    done = subprocess.run(torchrun(straight, port=29541), capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    killed = tmp_path / "killed"
    process = subprocess.Popen(torchrun(killed, port=29542), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=env, start_new_session=True)
    wait_for_metrics(killed, 3)
    os.killpg(process.pid, signal.SIGTERM)
    _, stderr = process.communicate(timeout=300)
    # each rank says it checkpointed and stopped (torchrun itself then exits 1 with its SignalException)
    assert stderr.count("checkpoint written, continue with --resume") == 2, stderr[-3000:]
    interrupted_at = torch.load(killed / "last.pt", weights_only=True)["step"]
    assert 2 <= interrupted_at < 10, interrupted_at
    assert not list(killed.glob("*.tmp")), "a partial checkpoint was left behind"
    done = subprocess.run(torchrun(killed, "--resume", port=29543), capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    a, b = encoder_state(straight), encoder_state(killed)
    assert a["step"] == b["step"] == 10
    for key in a["encoder"]:
        assert torch.equal(a["encoder"][key], b["encoder"][key]), key


def test_a_diverging_run_stops_with_a_message_and_keeps_the_last_good_checkpoint(tmp_path, cache_dir):
    run = tmp_path / "run"
    done = run_cli(["train", "--output", str(run), "--cache-dir", str(cache_dir), "--max-steps", "6",
                    "--checkpoint-every", "1", "--probe-every", "0", "--batch-size", "16", "--pgd-steps", "2",
                    "--primal-steps", "1", "--lr", "1e20", "--dual-hidden", "32"])
    assert done.returncode == 1
    assert "training stopped at batch" in done.stderr and "met a non-finite loss or gradient" in done.stderr
    state = load_checkpoint(run / "last.pt", TrainConfig(**json.loads((run / "config.json").read_text())).resume_fingerprint())
    assert all(torch.isfinite(v).all() for v in state["encoder"].values())


def test_open_clip_local_dir_on_an_image_folder_trains_and_exports_for_open_clip(tmp_path, cache_dir, tiny_clip_dir,
                                                                                  digit_folders):
    """The real-weights path on files written here: a tiny open_clip model and an ImageFolder of digits."""
    import open_clip

    model_dir, (folder, _) = tiny_clip_dir, digit_folders
    clip = open_clip.create_model(f"local-dir:{model_dir}")
    run = tmp_path / "run"
    done = run_cli(["train", "--model", f"local-dir:{model_dir}", "--data", str(folder), "--probe-data", str(folder),
                    "--output", str(run), "--cache-dir", str(cache_dir), "--max-steps", "2", "--batch-size", "8",
                    "--method", "tecoa-kl", "--pgd-steps", "2", "--primal-steps", "1", "--dual-hidden", "16",
                    "--probe-size", "16", "--probe-every", "1", "--lr", "1e-4"])
    assert done.returncode == 0, done.stderr[-3000:]
    exported, _, _ = open_clip.create_model_and_transforms(f"local-dir:{run / 'export'}")
    trained = torch.load(run / "last.pt", weights_only=True)["encoder"]
    for key, value in exported.visual.state_dict().items():
        assert torch.equal(value, trained[f"backbone.{key}"]), key
    assert not torch.equal(exported.visual.state_dict()["conv1.weight"], clip.visual.state_dict()["conv1.weight"])


def test_compiled_sequential_run_matches_the_eager_fused_one(tmp_path, cache_dir):
    """--compile and --passes sequential change how a step is computed, not what it computes."""
    common = ["--cache-dir", str(cache_dir), "--max-steps", "2", "--probe-every", "0", *FAST]
    eager, compiled = tmp_path / "eager", tmp_path / "compiled"
    assert run_cli(["train", "--output", str(eager), "--passes", "fused", *common]).returncode == 0
    done = run_cli(["train", "--output", str(compiled), "--compile", "--passes", "sequential", *common])
    assert done.returncode == 0, done.stderr[-2000:]
    a, b = encoder_state(eager), encoder_state(compiled)
    for key in a["encoder"]:
        assert torch.allclose(a["encoder"][key], b["encoder"][key], rtol=1e-3, atol=1e-5), key
    assert json.loads((compiled / "config.json").read_text())["compile"] is True
