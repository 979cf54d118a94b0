"""Faults of a training run: resume refuses what it cannot honour, damaged checkpoints and images are named, a run
folder holds one run, probes match the training classes, and a full disk at a checkpoint is one line naming the file."""

from __future__ import annotations

import dataclasses

import errno
import json
import os
import shutil
import subprocess
import zipfile

import pytest
import torch

from lore.training import checkpoint as checkpoint_module
from lore.training.checkpoint import CheckpointError, load_checkpoint, save_atomic
from lore.cli import main
from lore.training.config import OPERATIONAL_FIELDS, TrainConfig

FAST = ["--batch-size", "16", "--eps", "32/255", "--pgd-steps", "1", "--primal-steps", "1", "--lr", "1e-3",
        "--dual-lr", "1e-3", "--dual-hidden", "16", "--probe-every", "0", "--device", "cpu"]


@pytest.fixture
def finished_run(tmp_path, lore_cache):
    """A finished 2-batch run folder and the flags that made it."""
    run = tmp_path / "run"
    flags = ["--output", str(run), "--cache-dir", str(lore_cache), "--max-steps", "2", *FAST]
    assert main(["train", *flags]) == 0
    return run, flags


def _checkpoint_state(run):
    return torch.load(run / "last.pt", weights_only=True)


@pytest.mark.parametrize("flag, value", [("--lr", "5e-4"), ("--dual-lr", "0.5"), ("--weight-decay", "0.1"),
                                          ("--rho", "0.3"), ("--max-steps", "5"), ("--warmup-steps", "1")])
def test_resume_refuses_a_changed_training_setting_and_keeps_config_json_true(finished_run, capsys, flag, value):
    run, flags = finished_run
    before = (run / "config.json").read_text()
    assert main(["train", *flags, flag, value, "--resume"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and flag[2:].replace("-", "_") in error and "checkpoint" in error
    assert (run / "config.json").read_text() == before  # never rewritten with settings that were not applied


def test_resume_of_a_finished_run_reports_no_new_batches(finished_run, capsys):
    run, flags = finished_run
    assert main(["train", *flags, "--resume", "--log-every", "3"]) == 0  # operational settings may change
    assert "finished batches 2..2 of 2" in capsys.readouterr().out


def test_a_checkpoint_of_one_process_is_refused_under_two():
    fingerprint_one = TrainConfig().resume_fingerprint(world_size=1)
    assert TrainConfig().resume_fingerprint(world_size=2)["world_size"] == 2
    assert fingerprint_one != TrainConfig().resume_fingerprint(world_size=2)


def test_world_size_mismatch_names_it(tmp_path):
    path = tmp_path / "last.pt"
    config = TrainConfig()
    save_atomic({"format_version": 2, "fingerprint": config.resume_fingerprint(1), "step": 1, "epoch": 0,
                 "encoder": {}, "optimizer": {}, "scheduler": {}, "dual": {}, "rng": {}}, path)
    with pytest.raises(CheckpointError, match="world_size: checkpoint 1 vs now 2"):
        load_checkpoint(path, config.resume_fingerprint(2))


def test_every_field_that_shapes_training_is_in_the_fingerprint():
    fingerprint = TrainConfig().resume_fingerprint()
    for name in (f.name for f in dataclasses.fields(TrainConfig)):
        assert (name in fingerprint) != (name in OPERATIONAL_FIELDS), name


def _flip_a_bit_inside_a_tensor(path):
    with zipfile.ZipFile(path) as archive:
        record = max(archive.infolist(), key=lambda info: info.file_size)  # the largest tensor's storage
    data = bytearray(path.read_bytes())
    start = record.header_offset + 30 + len(record.filename.encode()) + len(record.extra)
    data[start + record.file_size // 2] ^= 0x10
    path.write_bytes(bytes(data))


def test_a_flipped_bit_inside_a_tensor_is_refused_not_loaded(finished_run, capsys):
    run, flags = finished_run
    _flip_a_bit_inside_a_tensor(run / "last.pt")
    with pytest.raises(CheckpointError, match="fails its CRC check"):
        load_checkpoint(run / "last.pt", TrainConfig.from_json(run / "config.json").resume_fingerprint())
    assert main(["train", *flags, "--resume"]) == 2
    assert "fails its CRC check" in capsys.readouterr().err


def test_a_killed_checkpoint_write_leaves_no_temporary_behind(tmp_path):
    path = tmp_path / "last.pt"
    stale = tmp_path / ".last.pt.abc123.tmp"
    stale.write_bytes(b"x" * 10_000)  # what a writer killed mid-write leaves
    save_atomic({"a": torch.zeros(3)}, path)
    assert not stale.exists() and path.is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_a_run_start_removes_a_stale_temporary(tmp_path, lore_cache):
    run = tmp_path / "run"
    run.mkdir()
    stale = run / ".last.pt.dead.tmp"
    stale.write_bytes(b"x" * 1000)
    assert main(["train", "--output", str(run), "--cache-dir", str(lore_cache), "--max-steps", "1",
                 "--checkpoint-every", "100", *FAST]) == 0
    assert not stale.exists()


# ---- unreadable images


@pytest.fixture
def folder_with_a_truncated_jpeg(tmp_path):
    from PIL import Image

    from lore import load_digits_images

    digits = load_digits_images(16)
    root = tmp_path / "data"
    for i in range(40):
        folder = root / digits.classnames[int(digits.labels[i])]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray((digits.images[i].permute(1, 2, 0).numpy() * 255).astype("uint8")).save(folder / f"{i}.jpg")
    victim = sorted(root.rglob("*.jpg"))[5]
    victim.write_bytes(victim.read_bytes()[:200])  # a truncated download
    garbage = sorted(root.rglob("*.jpg"))[11]
    garbage.write_bytes(b"this is not a jpeg")
    return root, {victim, garbage}


def test_an_unreadable_image_is_named_when_skipping_is_off(folder_with_a_truncated_jpeg, tmp_path, lore_cache, capsys):
    root, broken = folder_with_a_truncated_jpeg
    code = main(["train", "--data", str(root), "--probe-data", str(root), "--output", str(tmp_path / "run"),
                 "--cache-dir", str(lore_cache), "--max-steps", "2", "--batch-size", "20", "--no-skip-unreadable",
                 *FAST[2:]])
    error = capsys.readouterr().err
    assert code == 2 and "cannot be decoded" in error
    assert any(str(path) in error for path in broken)


def test_unreadable_images_are_skipped_listed_and_the_run_finishes(folder_with_a_truncated_jpeg, tmp_path, lore_cache):
    root, broken = folder_with_a_truncated_jpeg
    run = tmp_path / "run"
    with pytest.warns(UserWarning, match="unreadable image"):
        code = main(["train", "--data", str(root), "--probe-data", str(root), "--output", str(run),
                     "--cache-dir", str(lore_cache), "--max-steps", "2", "--batch-size", "20", *FAST[2:]])
    assert code == 0
    listed = (run / "unreadable_images.txt").read_text()
    assert all(str(path) in listed for path in broken)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["unreadable_images"] == len(broken)


def test_load_batch_substitutes_the_next_readable_image_deterministically(folder_with_a_truncated_jpeg):
    from lore.data.images import build_dataset, load_batch
    from lore.data.specs import UnreadableImageError

    root, broken = folder_with_a_truncated_jpeg
    dataset = build_dataset(str(root), 16)
    bad = [i for i in range(len(dataset)) if dataset.source(i) in {str(p) for p in broken}]
    indices = torch.tensor(bad + [0])
    with pytest.raises(UnreadableImageError, match="cannot be decoded"):
        load_batch(dataset, indices)
    seen = []
    images, labels, loaded = load_batch(dataset, indices, on_unreadable=seen.append)
    assert images.shape[0] == 3 and len(seen) == 2
    assert loaded.tolist() == [b + 1 for b in bad] + [0]
    again = load_batch(dataset, indices, on_unreadable=lambda message: None)
    assert torch.equal(again[0], images)


def test_a_fare_training_plot_has_no_empty_multiplier_legend(tmp_path, monkeypatch):
    import matplotlib.axes

    from lore.training.plots import plot_run

    run = tmp_path / "run"
    run.mkdir()
    records = [{"step": s, "robust_loss": 1.0 / (s + 1), "probe/clean_accuracy": 0.9} for s in range(3)]  # FARE: no lambda
    (run / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in records))
    legends = []
    original = matplotlib.axes.Axes.legend
    monkeypatch.setattr(matplotlib.axes.Axes, "legend",
                        lambda self, *a, **k: legends.append(self.get_title()) or original(self, *a, **k))
    plot_run(run, rho=0.1)
    assert "mean lambda(x)" not in legends


# ---- one run per folder; probes of the training classes


def _train(run, lore_cache, *extra):
    """A 2-batch run; the dual flags of FAST are left out for a method without a dual (they would be refused)."""
    method = extra[extra.index("--method") + 1] if "--method" in extra else "lore"
    pairs = zip(FAST[::2], FAST[1::2])
    constrained = method in ("lore", "tecoa-l2", "tecoa-kl")
    dropped = ("--dual",) if method == "naive" else ("--dual", "--primal-steps")  # FARE, TeCoA: their own 1 update
    fast = FAST if constrained else [v for pair in pairs if not pair[0].startswith(dropped) for v in pair]
    return main(["train", "--output", str(run), "--cache-dir", str(lore_cache), "--max-steps", "2", *fast, *extra])


@pytest.fixture
def finished_fare_run(tmp_path, lore_cache):
    run = tmp_path / "fare"
    assert _train(run, lore_cache, "--method", "fare") == 0
    return run


def test_a_new_run_into_a_folder_with_only_an_earlier_runs_metrics_is_refused(finished_fare_run, lore_cache, capsys):
    run = finished_fare_run  # what a run killed before its first checkpoint leaves: metrics, no last.pt
    for name in ("last.pt", "summary.json"):
        (run / name).unlink()
    shutil.rmtree(run / "export")
    before = (run / "metrics.jsonl").read_text()
    assert _train(run, lore_cache) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "earlier run's metrics.jsonl" in error and "no checkpoint" in error
    assert (run / "metrics.jsonl").read_text() == before  # not appended to


def test_a_new_run_into_a_copied_finished_run_without_its_checkpoint_is_refused(finished_fare_run, tmp_path, lore_cache,
                                                                                   capsys):
    copy = tmp_path / "copy"
    shutil.copytree(finished_fare_run, copy)
    (copy / "last.pt").unlink()
    exported = (copy / "export" / "encoder.safetensors").read_bytes()
    assert _train(copy, lore_cache, "--method", "tecoa") == 2
    error = capsys.readouterr().err
    assert "metrics.jsonl, summary.json, export" in error and "choose another --output" in error
    assert (copy / "export" / "encoder.safetensors").read_bytes() == exported


def test_evaluating_a_run_folder_whose_last_run_did_not_finish_is_refused(finished_fare_run, lore_cache, capsys):
    run = finished_fare_run
    summary = json.loads((run / "summary.json").read_text())
    (run / "summary.json").write_text(json.dumps({**summary, "status": "interrupted", "step": 1, "total_steps": 2}))
    flags = ["--data", "digits", "--n-samples", "8", "--attacks", "", "--device", "cpu", "--cache-dir", str(lore_cache),
             "--output", str(run.parent / "eval")]
    assert main(["eval", "--model", str(run), *flags]) == 2
    error = capsys.readouterr().err
    assert "did not finish (interrupted at step 1 of 2)" in error and str(run / "export") in error
    assert main(["eval", "--model", str(run / "export"), *flags]) == 0  # told to use the earlier export


def test_a_probe_with_other_classes_than_the_training_data_is_refused(tmp_path, lore_cache, capsys, write_digits):
    train = write_digits(tmp_path / "digits", range(0, 60))
    other = tmp_path / "other"
    for name in ("cat", "dog", "owl"):
        shutil.copytree(next(train.iterdir()), other / name)
    code = main(["train", "--data", str(train), "--probe-data", str(other), "--output", str(tmp_path / "run"),
                 "--cache-dir", str(lore_cache), "--max-steps", "1", "--batch-size", "20", *FAST[2:]])
    error = capsys.readouterr().err
    assert code == 2 and "probe data" in error and "different classes (10 vs 3" in error
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


# ---- a full disk at a checkpoint write


def _fail_the_second_save(monkeypatch):
    """torch.save fails as it does on a full disk (its zip writer's RuntimeError) from the second checkpoint on."""
    real, calls = torch.save, []

    def save(state, handle, *args, **kwargs):
        calls.append(1)
        if len(calls) >= 2:
            handle.write(b"PK\x03\x04 partial")
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")
        return real(state, handle, *args, **kwargs)

    monkeypatch.setattr(checkpoint_module.torch, "save", save)
    monkeypatch.setattr(checkpoint_module.shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10, 10, 0))


def test_a_full_disk_at_a_checkpoint_write_is_one_line_naming_the_file(tmp_path, lore_cache, capsys, monkeypatch):
    run = tmp_path / "run"
    _fail_the_second_save(monkeypatch)
    code = main(["train", "--output", str(run), "--cache-dir", str(lore_cache), "--max-steps", "4",
                 "--checkpoint-every", "2", *FAST])
    error = capsys.readouterr().err
    assert code == 2, error
    last = error.strip().splitlines()[-1]  # the lines before it are the run's progress
    assert last.startswith("lore train: ") and str(run / "last.pt") in last and "No space left on device" in last
    assert "free space and rerun" in last and "Traceback" not in error
    assert torch.load(run / "last.pt", weights_only=True)["step"] == 2  # the previous checkpoint, intact
    assert sorted(p.name for p in run.glob(".last.pt.*")) == []  # no temporary left behind


def _mount_small_tmpfs(folder) -> bool:
    """Mounts a 1 MiB tmpfs at `folder` where the machine allows it (root, mount available)."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    folder.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(folder)], capture_output=True)
    return done.returncode == 0


def test_a_really_full_disk_raises_enospc_naming_the_checkpoint_and_keeps_the_previous_one(tmp_path):
    small = tmp_path / "small"
    if not _mount_small_tmpfs(small):
        pytest.skip("cannot mount a small tmpfs here (needs root); the injected-failure test covers the path")
    try:
        path = small / "last.pt"
        save_atomic({"step": 1, "weights": torch.zeros(10)}, path)
        with pytest.raises(OSError) as caught:
            save_atomic({"step": 2, "weights": torch.zeros(1 << 19)}, path)  # 2 MiB: more than the disk holds
        assert caught.value.errno == errno.ENOSPC and caught.value.filename == str(path)
        assert "\n" not in str(caught.value)
        assert torch.load(path, weights_only=True)["step"] == 1
        assert [p.name for p in small.iterdir()] == ["last.pt"]
    finally:
        subprocess.run(["umount", str(small)], capture_output=True)
