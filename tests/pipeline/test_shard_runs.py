"""`lore train --data wds:...` end to end (slow): a run on shards written here, torchrun's ranks splitting an
epoch, and SIGTERM then --resume at the documented granularity (one batch)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import torch

from test_train_runs import ONE_THREAD, encoder_state, run_cli, wait_for_metrics

COMMON = ["--batch-size", "8", "--eps", "32/255", "--pgd-steps", "2", "--primal-steps", "2", "--lr", "1e-3",
          "--dual-hidden", "32", "--probe-data", "digits", "--device", "cpu"]


def test_a_run_on_shards_trains_skips_and_lists_a_broken_sample(tmp_path, lore_cache, write_shards):
    spec = write_shards(tmp_path / "shards", shards=3, per_shard=8, corrupt=1, without_image=1)
    run = tmp_path / "run"
    done = run_cli(["train", "--data", spec, "--output", str(run), "--cache-dir", str(lore_cache), "--max-steps", "4",
                    "--probe-every", "2", "--probe-size", "32", *COMMON])
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["unreadable_images"] == 1  # 25 samples: 4 batches cover them
    assert summary["samples_without_image"] == 1
    listed = (run / "unreadable_images.txt").read_text()
    assert "0002.tar:bad000.png" in listed and "0002.tar:caption000: no image member; left out" in listed
    assert summary["provenance"]["data"]["files"] == 3 and summary["provenance"]["data"]["samples"] == 25
    probes = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if "probe/clean_accuracy" in line]
    assert probes and all(0 <= p["probe/clean_accuracy"] <= 1 for p in probes)


RECORDING = textwrap.dedent("""
    import json, os, sys
    from lore.training import engine
    from lore.cli import main

    seen = []
    original = engine.training_batches

    def recording(dataset, *args, **kwargs):
        for images, labels, indices in original(dataset, *args, **kwargs):
            seen.extend(dataset.source(int(i)) for i in indices)
            yield images, labels, indices

    engine.training_batches = recording
    code = main(sys.argv[1:])
    with open(os.path.join(sys.argv[sys.argv.index("--output") + 1], f"seen-{os.environ['RANK']}.json"), "w") as f:
        json.dump(seen, f)
    sys.exit(code)
""")


def test_torchrun_ranks_see_every_sample_of_an_epoch_once(tmp_path, lore_cache, write_shards):
    """2 gloo ranks, 48 samples in 3 shards, global batch 16: one epoch is 3 batches, and the ranks' loaded
    samples are disjoint and together every sample."""
    spec = write_shards(tmp_path / "shards", shards=3, per_shard=16)
    script = tmp_path / "recording.py"
    script.write_text(RECORDING)
    run = tmp_path / "ddp"
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29551",
                           str(script), "train", "--data", spec, "--output", str(run), "--cache-dir", str(lore_cache),
                           "--max-steps", "3", "--probe-every", "0", "--workers", "1", *COMMON],
                          capture_output=True, text=True, timeout=600, env=ONE_THREAD)
    assert done.returncode == 0, done.stderr[-3000:]
    rank0, rank1 = (json.loads((run / f"seen-{r}.json").read_text()) for r in (0, 1))
    assert len(rank0) == len(rank1) == 24
    assert set(rank0).isdisjoint(rank1) and len(set(rank0) | set(rank1)) == 48
    assert json.loads((run / "summary.json").read_text())["ranks_agree"] is True


def test_sigterm_then_resume_on_shards_equals_an_uninterrupted_run(tmp_path, lore_cache, write_shards):
    """Killed mid-epoch (the process group, DataLoader workers included), resumed: the same weights bit for bit
    as a run that was never interrupted. The checkpoint records the batch; the resume continues from it."""
    spec = write_shards(tmp_path / "shards", shards=6, per_shard=16)  # 96 samples at batch 8: 12 batches an epoch
    common = ["train", "--data", spec, "--cache-dir", str(lore_cache), "--max-steps", "14", "--checkpoint-every", "1",
              "--probe-every", "0", "--workers", "2", *COMMON]
    straight = tmp_path / "straight"
    assert run_cli([*common, "--output", str(straight)]).returncode == 0
    killed = tmp_path / "killed"
    process = subprocess.Popen([sys.executable, "-m", "lore", *common, "--output", str(killed)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=ONE_THREAD, start_new_session=True)
    wait_for_metrics(killed, 3)
    os.killpg(process.pid, signal.SIGTERM)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 130, stderr[-3000:]
    stopped = torch.load(killed / "last.pt", weights_only=True)["step"]
    # mid-epoch, however late the signal lands under load (a stop at batch 3..11); the resume crosses batch 12
    assert 2 <= stopped < 12
    resumed = run_cli([*common, "--output", str(killed), "--resume"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a, b = encoder_state(straight), encoder_state(killed)
    assert a["step"] == b["step"] == 14
    for key in a["encoder"]:
        assert torch.equal(a["encoder"][key], b["encoder"][key]), key
