"""Resumes refuse changed inputs: the run records its data's and its model's fingerprints when it starts, and
`--resume` compares them before it continues (lore.training.checkpoint.check_inputs)."""

from __future__ import annotations

import pytest

from lore.training.checkpoint import CheckpointError, check_inputs
from lore.training.config import TrainConfig
from lore.training.engine import train

TINY = dict(max_steps=2, batch_size=4, pgd_steps=1, checkpoint_every=1, device="cpu")  # FARE: its own 1 update


def test_shards_train_without_probe_data_when_no_probe_runs_and_a_resume_on_rewritten_shards_is_refused(
        tmp_path, write_shards, lore_cache):
    """--probe-data was required even with --probe-every 0 (no probe runs). And a run stopped at batch 4 of 12
    resumed on rewritten shards with exit 0, "finished": the fingerprint held only the spec string."""
    spec = write_shards(tmp_path / "shards", shards=2, per_shard=8)
    config = TrainConfig(model="digits-cnn", data=spec, output=str(tmp_path / "run"), probe_every=0,
                         cache_dir=str(lore_cache), method="fare", **TINY)
    assert train(config).status == "finished"
    assert train(config, resume=True).status == "finished"  # unchanged inputs: the resume is accepted
    write_shards(tmp_path / "shards", shards=2, per_shard=8)  # the same samples, rewritten: new modification times
    with pytest.raises(CheckpointError, match="trained on other inputs: the training data .* changed since the run started"):
        train(config, resume=True)


def test_a_resume_on_a_replaced_hf_model_is_refused(tmp_path, lore_cache):
    """Replacing the hf: folder and resuming rebuilt phi_0 from the new weights and exported the new text tower."""
    import shutil

    from hf_checkpoints import clip_folder

    folder = clip_folder(tmp_path / "clip", seed=0)
    config = TrainConfig(model=f"hf:{folder}", output=str(tmp_path / "run"), probe_every=0, cache_dir=str(lore_cache),
                         method="fare", **TINY)
    assert train(config).status == "finished"
    shutil.rmtree(folder)
    clip_folder(folder, seed=1)
    with pytest.raises(CheckpointError, match="the starting model .* changed since the run started"):
        train(config, resume=True)


def test_a_checkpoint_that_recorded_no_inputs_cannot_be_resumed():
    with pytest.raises(CheckpointError, match="records no fingerprint of its data and model"):
        check_inputs({"fingerprint": {"seed": 0}}, {"data": {}, "model": {}}, "last.pt")
    check_inputs({"fingerprint": {"inputs": {"data": {"a": 1}, "model": {"b": 2}}}},
                 {"data": {"a": 1}, "model": {"b": 2}}, "last.pt")
